# Declarations only: the Wasmtime C API subset of third_party/wasmtime_capi.h.
from libc.stdint cimport uint8_t, uint64_t

cdef extern from "wasmtime_capi.h" nogil:
    ctypedef struct wasm_engine_t
    ctypedef struct wasmtime_store_t
    ctypedef struct wasmtime_context_t
    ctypedef struct wasmtime_module_t
    ctypedef struct wasmtime_error_t
    ctypedef struct wasmtime_guestprofiler_t
    ctypedef struct wasm_trap_t

    ctypedef struct wasm_byte_vec_t:
        size_t size
        uint8_t *data
    ctypedef wasm_byte_vec_t wasm_name_t

    ctypedef struct wasmtime_guestprofiler_modules_t:
        const wasm_name_t *name
        const wasmtime_module_t *mod

    ctypedef uint8_t wasmtime_trap_code_t
    enum: WASMTIME_TRAP_CODE_INTERRUPT
    ctypedef uint8_t wasmtime_update_deadline_kind_t
    enum: WASMTIME_UPDATE_DEADLINE_CONTINUE

    ctypedef wasmtime_error_t *(*wasmtime_epoch_deadline_callback_fn)(
        wasmtime_context_t *, void *, uint64_t *, wasmtime_update_deadline_kind_t *) noexcept nogil
    ctypedef void (*wasmtime_finalizer_fn)(void *) noexcept nogil

    ctypedef wasmtime_guestprofiler_t *(*wasmtime_guestprofiler_new_v19_fn)(
        const wasm_name_t *, uint64_t, const wasmtime_guestprofiler_modules_t *, size_t) noexcept nogil
    ctypedef wasmtime_guestprofiler_t *(*wasmtime_guestprofiler_new_v40_fn)(
        const wasm_engine_t *, const wasm_name_t *, uint64_t,
        const wasmtime_guestprofiler_modules_t *, size_t) noexcept nogil
    ctypedef void (*wasmtime_guestprofiler_sample_fn)(
        wasmtime_guestprofiler_t *, const wasmtime_store_t *, uint64_t) noexcept nogil
    ctypedef wasmtime_error_t *(*wasmtime_guestprofiler_finish_fn)(
        wasmtime_guestprofiler_t *, wasm_byte_vec_t *) noexcept nogil
    ctypedef void (*wasmtime_guestprofiler_delete_fn)(wasmtime_guestprofiler_t *) noexcept nogil
    ctypedef void (*wasmtime_store_epoch_deadline_callback_set_fn)(
        wasmtime_store_t *, wasmtime_epoch_deadline_callback_fn, void *,
        wasmtime_finalizer_fn) noexcept nogil
    ctypedef void (*wasmtime_context_set_epoch_deadline_fn)(wasmtime_context_t *, uint64_t) noexcept nogil
    ctypedef void (*wasmtime_engine_increment_epoch_fn)(wasm_engine_t *) noexcept nogil
    ctypedef wasm_engine_t *(*wasmtime_engine_clone_fn)(const wasm_engine_t *) noexcept nogil
    ctypedef void (*wasm_engine_delete_fn)(wasm_engine_t *) noexcept nogil
    ctypedef void (*wasm_byte_vec_delete_fn)(wasm_byte_vec_t *) noexcept nogil
    ctypedef void (*wasmtime_error_message_fn)(const wasmtime_error_t *, wasm_name_t *) noexcept nogil
    ctypedef void (*wasmtime_error_delete_fn)(wasmtime_error_t *) noexcept nogil
    ctypedef wasmtime_error_t *(*wasmtime_error_new_fn)(const char *) noexcept nogil
    ctypedef wasm_trap_t *(*wasmtime_trap_new_code_fn)(wasmtime_trap_code_t) noexcept nogil
