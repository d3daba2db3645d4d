/* The platform's floor for a ticker: a bare C thread sleeping to absolute deadlines (timer slack 1 ns) and
 * advancing a counter at each, for benchmarks/ticker_cost.py. Usage: ticker_floor INTERVAL_NS SECONDS
 * Prints "ticks CPU_NS": how many ticks, and the process's CPU time over them. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>

static int64_t ns(struct timespec t) { return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec; }

static int64_t process_cpu_ns(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return ((int64_t)usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1000000000 +
           ((int64_t)usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) * 1000;
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    int64_t interval = atoll(argv[1]), seconds = atoll(argv[2]);
    struct timespec now, at;
    static volatile uint64_t epoch;
    prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0);
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t start = ns(now), next = start + interval, cpu = process_cpu_ns();
    uint64_t ticks = 0;
    while (next < start + seconds * 1000000000) {
        at.tv_sec = next / 1000000000;
        at.tv_nsec = next % 1000000000;
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL);
        __atomic_add_fetch(&epoch, 1, __ATOMIC_SEQ_CST);
        ticks++;
        next += interval;
    }
    printf("%llu %lld\n", (unsigned long long)ticks, (long long)(process_cpu_ns() - cpu));
    return 0;
}
