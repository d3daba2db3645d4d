/* The wasm calls the calling thread is in, entered through wasmtime-py (see _core's wasm_call_enter). Per thread:
   the epoch callback runs on the guest's own thread and reads them there, with no lock. One copy per translation
   unit (static): only _core includes it. */
#ifndef WASMTIME_GP_CALLS_H
#define WASMTIME_GP_CALLS_H
#include <stdint.h>

#define GP_WASM_DEPTH_MAX 32

static __thread int gp_wasm_depth;                           /* calls in progress, nested through host functions */
static __thread int64_t gp_wasm_entered_ns[GP_WASM_DEPTH_MAX]; /* CLOCK_MONOTONIC when each began */

static inline void gp_wasm_enter(int64_t now) {
    gp_wasm_entered_ns[gp_wasm_depth < GP_WASM_DEPTH_MAX ? gp_wasm_depth : GP_WASM_DEPTH_MAX - 1] = now;
    gp_wasm_depth++;
}

static inline void gp_wasm_leave(void) {
    if (gp_wasm_depth > 0) gp_wasm_depth--;
}

/* When the innermost call began; 0 outside any. A call into another store from a host function is innermost: no
   stretch of this one reaches back before it. Nested deeper than GP_WASM_DEPTH_MAX, a later entry than the real
   one: never more time outside wasm. */
static inline int64_t gp_wasm_innermost_entry_ns(void) {
    if (gp_wasm_depth == 0) return 0;
    return gp_wasm_entered_ns[(gp_wasm_depth < GP_WASM_DEPTH_MAX ? gp_wasm_depth : GP_WASM_DEPTH_MAX) - 1];
}

#endif
