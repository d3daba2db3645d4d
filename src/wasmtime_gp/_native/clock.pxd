# The clocks and counters the native core reads, written once for _core and _ticker. Any thread, no GIL.
from libc.stdint cimport int64_t
from posix.time cimport timespec, clock_gettime, CLOCK_MONOTONIC, CLOCK_THREAD_CPUTIME_ID

cdef extern from "<sys/resource.h>" nogil:
    struct rusage:
        long ru_nvcsw
        long ru_nivcsw
    int getrusage(int, rusage *)
    enum: RUSAGE_THREAD


cdef inline int64_t monotonic_ns() noexcept nogil:
    """Wall-clock time for deadlines and durations."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline int64_t thread_cpu_ns() noexcept nogil:
    """CPU time of the calling thread; -1 if it cannot be read."""
    cdef timespec ts
    if clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0:
        return -1
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline bint thread_switches(long *waits, long *preemptions) noexcept nogil:
    """How many times the calling thread gave up its CPU to wait (I/O, a lock, a sleep: voluntary context
    switches), and how many times it was preempted; False if they cannot be read."""
    cdef rusage usage
    if getrusage(RUSAGE_THREAD, &usage) != 0:
        return False
    waits[0], preemptions[0] = usage.ru_nvcsw, usage.ru_nivcsw
    return True
