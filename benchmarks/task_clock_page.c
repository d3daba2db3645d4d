/* Can this machine read a thread's CPU time without a system call? A perf_event task clock read through its
 * mmap'd page (the way `perf` reads counters in user space), against CLOCK_THREAD_CPUTIME_ID.
 *
 *     cc -O2 -o /tmp/task_clock_page benchmarks/task_clock_page.c && /tmp/task_clock_page
 *
 * The page is live only if the kernel keeps its fields current while the thread runs (cap_user_time, to
 * extend the count by the TSC since the last update): then the two deltas of a busy loop agree. Where the
 * page only changes when the counter is read with read(2), its delta is 0 and it is no cheaper clock.
 * x86-64 Linux only (rdtsc). docs/performance.md gives what it printed on our VMs. */
#define _GNU_SOURCE
#include <linux/perf_event.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

static int64_t clock_ns(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* The task clock's count as the page gives it: the offset the kernel last wrote, extended by the time since
 * (cap_user_time's TSC conversion) when the kernel offers that. */
static int64_t page_ns(volatile struct perf_event_mmap_page *page) {
    uint32_t seq, mult = 0;
    uint16_t shift = 0;
    uint64_t count, cycles = 0, offset = 0;
    do {
        seq = page->lock;
        __asm__ volatile("" ::: "memory");
        count = page->offset;
        if (page->cap_user_time) {
            cycles = __rdtsc();
            mult = page->time_mult;
            shift = page->time_shift;
            offset = page->time_offset;
        }
        __asm__ volatile("" ::: "memory");
    } while (page->lock != seq);
    if (!mult) return (int64_t)count;
    return (int64_t)(count + offset + (cycles >> shift) * mult + (((cycles & ((1ULL << shift) - 1)) * mult) >> shift));
}

int main(void) {
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.size = sizeof attr;
    attr.config = PERF_COUNT_SW_TASK_CLOCK;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    int fd = (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
    if (fd < 0) {
        perror("perf_event_open (refused: a seccomp profile or perf_event_paranoid)");
        return 1;
    }
    volatile struct perf_event_mmap_page *page =
        mmap(NULL, (size_t)sysconf(_SC_PAGESIZE), PROT_READ, MAP_SHARED, fd, 0);
    if (page == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    printf("cap_user_time %d, cap_user_rdpmc %d\n", (int)page->cap_user_time, (int)page->cap_user_rdpmc);
    int64_t cpu0 = clock_ns(CLOCK_THREAD_CPUTIME_ID), page0 = page_ns(page);
    volatile uint64_t sink = 0;
    for (uint64_t i = 0; i < 50000000; i++) sink += i;
    int64_t cpu1 = clock_ns(CLOCK_THREAD_CPUTIME_ID), page1 = page_ns(page);
    printf("a busy loop: CLOCK_THREAD_CPUTIME_ID %.3f ms, the page %.3f ms\n", (cpu1 - cpu0) / 1e6,
           (page1 - page0) / 1e6);
    const int reads = 1000000;
    int64_t started = clock_ns(CLOCK_MONOTONIC);
    for (int i = 0; i < reads; i++) sink += (uint64_t)clock_ns(CLOCK_THREAD_CPUTIME_ID);
    int64_t middle = clock_ns(CLOCK_MONOTONIC);
    for (int i = 0; i < reads; i++) sink += (uint64_t)page_ns(page);
    int64_t ended = clock_ns(CLOCK_MONOTONIC);
    printf("per read: clock_gettime %.0f ns, the page %.0f ns\n", (double)(middle - started) / reads,
           (double)(ended - middle) / reads);
    return 0;
}
