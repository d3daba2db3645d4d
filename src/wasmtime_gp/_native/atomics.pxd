# Declarations only: atomics.h, the atomics for values read across threads without a lock.
from libc.stdint cimport int64_t, uint64_t

cdef extern from "atomics.h" nogil:
    int64_t gp_load_i64(const int64_t *p)
    void gp_store_i64(int64_t *p, int64_t v)
    uint64_t gp_load_u64(const uint64_t *p)
    void gp_store_u64(uint64_t *p, uint64_t v)
    void gp_add_u64(uint64_t *p, uint64_t v)
    void gp_add_u64_ordered(uint64_t *p, uint64_t v)
    uint64_t gp_load_u64_ordered(const uint64_t *p)
    void gp_store_u64_ordered(uint64_t *p, uint64_t v)
    int64_t gp_load_i64_ordered(const int64_t *p)
    void gp_store_i64_ordered(int64_t *p, int64_t v)
    void gp_store_u64_release(uint64_t *p, uint64_t v)
    uint64_t gp_load_u64_acquire(const uint64_t *p)
    int gp_add_int(int *p, int v)
