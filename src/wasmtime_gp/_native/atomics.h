/* Relaxed atomic loads and stores for the few values read without a lock across threads. */
#ifndef WASMTIME_GP_ATOMICS_H
#define WASMTIME_GP_ATOMICS_H
#include <stdint.h>

static inline int64_t gp_load_i64(const int64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void gp_store_i64(int64_t *p, int64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline uint64_t gp_load_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void gp_add_u64(uint64_t *p, uint64_t v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }

#endif
