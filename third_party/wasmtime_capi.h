/*
 * The subset of the Wasmtime C API that wasmtime-gp binds, declared here from
 * Wasmtime's documented ABI (headers wasm.h, wasmtime/*.h). This is not a copy
 * of Wasmtime's headers: it declares only what we call, as function-pointer
 * types, because every symbol is resolved at run time with dlsym() from the
 * library that wasmtime-py has already loaded.
 *
 * The Wasmtime C API is Copyright the Bytecode Alliance contributors and is
 * licensed under the Apache License 2.0 with LLVM Exceptions; see
 * LICENSE.wasmtime beside this file.
 *
 * "Holds for" gives the Wasmtime (and wasmtime-py) releases for which each
 * declaration matches the published ABI, checked against every X.0.0 release
 * tag from 19 to 48 and against the libraries of wasmtime-py 19.0.0, 39.0.0,
 * 40.0.0 and 50.0.1. Changes that only add `const` to a pointer parameter (as
 * in 45) leave the ABI as it was and are noted where they happened.
 *
 * Behaviour behind these declarations that wasmtime-gp relies on, per release:
 * - 19 -> 31: GuestProfiler's frame lookup (a partition_point over modules
 *   sorted by address) finds no frame once two or more modules are listed;
 *   32 replaced it with a binary search. wasmtime-gp refuses several modules
 *   before 32.
 * - 40 -> 50: wasmtime_guestprofiler_new panics (aborting the process) on a
 *   module compiled by another engine or on an engine with guest debugging;
 *   19 -> 39 take no engine and have nothing to check.
 * - 19 -> 50: wasmtime_guestprofiler_new panics on a name that is not UTF-8.
 * - 40 is also the first release exporting wasmtime_config_shared_memory_set,
 *   which wasmtime-gp uses to cross-check the version it was told.
 */
#ifndef WASMTIME_GP_CAPI_H
#define WASMTIME_GP_CAPI_H

#include <stddef.h>
#include <stdint.h>

/* Opaque handles. Holds for: all releases 19 -> 50. */
typedef struct wasm_engine_t wasm_engine_t;
typedef struct wasmtime_store wasmtime_store_t;
typedef struct wasmtime_context wasmtime_context_t;
typedef struct wasmtime_module wasmtime_module_t;
typedef struct wasmtime_error wasmtime_error_t;
typedef struct wasmtime_guestprofiler wasmtime_guestprofiler_t;
typedef struct wasm_trap_t wasm_trap_t;

/* wasm.h: WASM_DECLARE_VEC(byte, ); wasm_name_t is the same type.
 * Holds for: all releases 19 -> 50. */
typedef struct wasm_byte_vec_t {
  size_t size;
  uint8_t *data;
} wasm_byte_vec_t;
typedef wasm_byte_vec_t wasm_name_t;

/* wasmtime/profiling.h. Holds for: 19 -> 50. */
typedef struct wasmtime_guestprofiler_modules {
  const wasm_name_t *name;
  const wasmtime_module_t *mod;
} wasmtime_guestprofiler_modules_t;

/* wasmtime/store.h. Holds for: 19 -> 50 (YIELD = 1 exists only with the
 * "async" feature; we only ever return CONTINUE). */
typedef uint8_t wasmtime_update_deadline_kind_t;
#define WASMTIME_UPDATE_DEADLINE_CONTINUE 0

typedef wasmtime_error_t *(*wasmtime_epoch_deadline_callback_fn)(
    wasmtime_context_t *context, void *data, uint64_t *epoch_deadline_delta,
    wasmtime_update_deadline_kind_t *update_kind);
typedef void (*wasmtime_finalizer_fn)(void *data);

/* --- Function types, one per symbol we resolve --- */

/* wasmtime_guestprofiler_new. Holds for: 19 -> 39 (no engine argument). */
typedef wasmtime_guestprofiler_t *(*wasmtime_guestprofiler_new_v19_fn)(
    const wasm_name_t *module_name, uint64_t interval_nanos,
    const wasmtime_guestprofiler_modules_t *modules, size_t modules_len);

/* wasmtime_guestprofiler_new. Holds for: 40 -> 50 (engine first). */
typedef wasmtime_guestprofiler_t *(*wasmtime_guestprofiler_new_v40_fn)(
    const wasm_engine_t *engine, const wasm_name_t *module_name,
    uint64_t interval_nanos, const wasmtime_guestprofiler_modules_t *modules,
    size_t modules_len);

/* Holds for: 19 -> 50. */
typedef void (*wasmtime_guestprofiler_sample_fn)(
    wasmtime_guestprofiler_t *guestprofiler, const wasmtime_store_t *store,
    uint64_t delta_nanos);

/* Takes ownership of the profiler even when it returns an error.
 * Holds for: 19 -> 50. */
typedef wasmtime_error_t *(*wasmtime_guestprofiler_finish_fn)(
    wasmtime_guestprofiler_t *guestprofiler, wasm_byte_vec_t *out);

/* Holds for: 19 -> 50. */
typedef void (*wasmtime_guestprofiler_delete_fn)(
    wasmtime_guestprofiler_t *guestprofiler);

/* The finalizer runs when the store drops the callback: when the store is
 * deleted or when another callback replaces ours. Holds for: 19 -> 50. */
typedef void (*wasmtime_store_epoch_deadline_callback_set_fn)(
    wasmtime_store_t *store, wasmtime_epoch_deadline_callback_fn func,
    void *data, wasmtime_finalizer_fn finalizer);

/* Holds for: 19 -> 50. */
typedef void (*wasmtime_context_set_epoch_deadline_fn)(
    wasmtime_context_t *context, uint64_t ticks_beyond_current);

/* Holds for: 19 -> 50 (the parameter is const from 45). Thread-safe: an
 * atomic add on the engine. */
typedef void (*wasmtime_engine_increment_epoch_fn)(wasm_engine_t *engine);

/* wasmtime_engine_clone. Holds for: 24 -> 50 (const parameter from 45);
 * absent before 24. */
typedef wasm_engine_t *(*wasmtime_engine_clone_fn)(const wasm_engine_t *engine);

/* wasm.h, WASM_DECLARE_OWN and WASM_DECLARE_VEC. Holds for: 19 -> 50. */
typedef void (*wasm_engine_delete_fn)(wasm_engine_t *engine);
typedef void (*wasm_byte_vec_delete_fn)(wasm_byte_vec_t *vec);
typedef void (*wasmtime_error_message_fn)(const wasmtime_error_t *error,
                                          wasm_name_t *message);
typedef void (*wasmtime_error_delete_fn)(wasmtime_error_t *error);
/* Returning a new error from the epoch-deadline callback traps the guest.
 * Holds for: 19 -> 50. */
typedef wasmtime_error_t *(*wasmtime_error_new_fn)(const char *message);

/* wasmtime/trap.h: the trap Wasmtime itself raises at an epoch deadline. Holds
 * for: 34 -> 50; absent before 34. An unknown code panics (aborts): we only
 * ever pass INTERRUPT, whose value holds for 19 -> 50. A wasm_trap_t and a
 * wasmtime_error_t are both #[repr(C)] { Error } (19 -> 50), so the epoch
 * callback may return one as the other, and the guest sees that very trap. */
typedef uint8_t wasmtime_trap_code_t;
#define WASMTIME_TRAP_CODE_INTERRUPT 10
typedef wasm_trap_t *(*wasmtime_trap_new_code_fn)(wasmtime_trap_code_t code);

#endif /* WASMTIME_GP_CAPI_H */
