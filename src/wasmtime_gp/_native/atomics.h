/* Atomics for the few values read without a lock across threads: relaxed, except where an order matters. */
#ifndef WASMTIME_GP_ATOMICS_H
#define WASMTIME_GP_ATOMICS_H
#include <stdint.h>

static inline int64_t gp_load_i64(const int64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void gp_store_i64(int64_t *p, int64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline uint64_t gp_load_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void gp_store_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline void gp_add_u64(uint64_t *p, uint64_t v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
/* A count that must be seen by whoever sees what the counting thread does next (a full fence). */
static inline void gp_add_u64_ordered(uint64_t *p, uint64_t v) { __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static inline uint64_t gp_load_u64_ordered(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
/* A value and the stamp that says whose it is (_ticker's tick stamps): every access in one total order. */
static inline void gp_store_u64_ordered(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline int64_t gp_load_i64_ordered(const int64_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void gp_store_i64_ordered(int64_t *p, int64_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
/* A value that publishes the stores made before it, to a thread that loads it with acquire. */
static inline void gp_store_u64_release(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint64_t gp_load_u64_acquire(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
/* Reference counts: the new count. */
static inline int gp_add_int(int *p, int v) { return __atomic_add_fetch(p, v, __ATOMIC_ACQ_REL); }

#endif
