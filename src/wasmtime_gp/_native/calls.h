/* The wasm calls the calling thread is in, entered through wasmtime-py (see _core's wasm_call_enter). Per thread:
   the epoch callback runs on the guest's own thread and reads them there, with no lock. One copy per translation
   unit (static): only _core includes it. */
#ifndef WASMTIME_GP_CALLS_H
#define WASMTIME_GP_CALLS_H
#include <stdint.h>

static __thread int gp_wasm_depth;          /* calls in progress, nested through host functions */
static __thread int64_t gp_wasm_entered_ns; /* CLOCK_MONOTONIC when the outermost one began */

#endif
