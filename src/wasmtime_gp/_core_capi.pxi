# Part of _core.pyx: the C API table, resolved with dlsym from wasmtime-py's own library, and the one door
# for a wasmtime_error_t.

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.string cimport memset
from posix.dlfcn cimport dlsym

from wasmtime_gp._ticker cimport ticker_bind

from wasmtime_gp._errors import GuestProfilerError  # the one door raises the package's own error

cdef CApi api
cdef bint api_bound = False
cdef bint new_takes_engine = False


cdef void *_resolve(void *handle, str name, list missing):
    """dlsym one symbol, noting it in `missing` if absent (from bind(), GIL held)."""
    cdef bytes cname = name.encode("ascii")
    cdef void *p = dlsym(handle, cname)
    if p == NULL:
        missing.append(name)
    return p


def bind(size_t library_handle, bint engine_first) -> list:
    """Resolve the C API from wasmtime-py's own library handle; return the names not found.

    Called once, at import, with the GIL held.
    """
    global api_bound, new_takes_engine
    cdef void *h = <void *>library_handle
    cdef list missing = []
    cdef void *new_fn = _resolve(h, "wasmtime_guestprofiler_new", missing)
    api.guestprofiler_sample = <wasmtime_guestprofiler_sample_fn>_resolve(
        h, "wasmtime_guestprofiler_sample", missing)
    api.guestprofiler_finish = <wasmtime_guestprofiler_finish_fn>_resolve(
        h, "wasmtime_guestprofiler_finish", missing)
    api.guestprofiler_delete = <wasmtime_guestprofiler_delete_fn>_resolve(
        h, "wasmtime_guestprofiler_delete", missing)
    api.store_epoch_deadline_callback = <wasmtime_store_epoch_deadline_callback_set_fn>_resolve(
        h, "wasmtime_store_epoch_deadline_callback", missing)
    api.context_set_epoch_deadline = <wasmtime_context_set_epoch_deadline_fn>_resolve(
        h, "wasmtime_context_set_epoch_deadline", missing)
    api.engine_increment_epoch = <wasmtime_engine_increment_epoch_fn>_resolve(
        h, "wasmtime_engine_increment_epoch", missing)
    api.engine_delete = <wasm_engine_delete_fn>_resolve(h, "wasm_engine_delete", missing)
    api.byte_vec_delete = <wasm_byte_vec_delete_fn>_resolve(h, "wasm_byte_vec_delete", missing)
    api.error_message = <wasmtime_error_message_fn>_resolve(h, "wasmtime_error_message", missing)
    api.error_delete = <wasmtime_error_delete_fn>_resolve(h, "wasmtime_error_delete", missing)
    api.error_new = <wasmtime_error_new_fn>_resolve(h, "wasmtime_error_new", missing)
    # Optional (Wasmtime >= 24): without it the ticker borrows wasmtime-py's engine pointer.
    api.engine_clone = <wasmtime_engine_clone_fn>dlsym(h, b"wasmtime_engine_clone")
    # Optional (Wasmtime >= 34): without it an embedder's deadline surfaces as a WasmtimeError, not a Trap.
    api.trap_new_code = <wasmtime_trap_new_code_fn>dlsym(h, b"wasmtime_trap_new_code")
    new_takes_engine = engine_first
    if engine_first:
        api.guestprofiler_new_v40 = <wasmtime_guestprofiler_new_v40_fn>new_fn
    else:
        api.guestprofiler_new_v19 = <wasmtime_guestprofiler_new_v19_fn>new_fn
    api_bound = not missing
    if api_bound:
        ticker_bind(api.engine_increment_epoch, api.engine_clone, api.engine_delete)
    return missing


def has_symbol(size_t library_handle, str name) -> bool:
    """Whether the library exports `name` (cross-checks the ABI against the version; at import, GIL held)."""
    return dlsym(<void *>library_handle, name.encode("ascii")) != NULL


def raises_genuine_traps() -> bool:
    """Whether an embedder's deadline reached under our callback raises Wasmtime's own Trap (>= 34). GIL."""
    return api.trap_new_code != NULL


def can_clone_engine() -> bool:
    """Whether Wasmtime has wasmtime_engine_clone (>= 24). Any thread, GIL held."""
    return api.engine_clone != NULL


cdef str take_error_message(wasmtime_error_t *error):
    """The one door for a wasmtime_error_t: read its message and free it (GIL held)."""
    cdef wasm_name_t message
    memset(&message, 0, sizeof(message))
    api.error_message(error, &message)
    text = PyBytes_FromStringAndSize(<char *>message.data, message.size).decode("utf-8", "replace")
    api.byte_vec_delete(&message)
    api.error_delete(error)
    return text


cdef bytes finish_profiler(wasmtime_guestprofiler_t *profiler):
    """Finish (and so free) a wasmtime profiler taken out of its sampler; return its JSON (GIL held)."""
    cdef wasmtime_error_t *error
    cdef wasm_byte_vec_t out
    memset(&out, 0, sizeof(out))
    with nogil:
        error = api.guestprofiler_finish(profiler, &out)
    if error != NULL:
        raise GuestProfilerError(f"Wasmtime could not write the profile: {take_error_message(error)}")
    try:
        return PyBytes_FromStringAndSize(<char *>out.data, out.size)
    finally:
        api.byte_vec_delete(&out)
