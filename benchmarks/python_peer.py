"""THE PEER, not wasmtime-gp: the guest profiler a wasmtime-py user can write today in pure Python.

It uses only wasmtime-py's own ctypes bindings (`wasmtime._bindings`): a ctypes epoch-deadline callback that
calls `wasmtime_guestprofiler_sample`, and a `threading.Thread` ticker calling `engine.increment_epoch()`.
Both need the GIL: that is what the benchmarks compare wasmtime-gp against. Wasmtime >= 40 only.
"""

from __future__ import annotations

import ctypes
import threading
import time

import wasmtime
from wasmtime import _bindings as capi
from wasmtime import _ffi

# The callback type exactly as wasmtime-py's bindings declare it (it returns an error pointer; 0 is none).
_Callback = capi._wasmtime_store_epoch_deadline_callback.argtypes[1]
_NoFinalizer = capi._wasmtime_store_epoch_deadline_callback.argtypes[3]


def _name(text: str) -> capi.wasm_byte_vec_t:
    data = text.encode()
    vec = capi.wasm_byte_vec_t()
    _ffi.wasm_byte_vec_new(ctypes.byref(vec), len(data), (ctypes.c_uint8 * len(data)).from_buffer_copy(data))
    return vec


class PythonPeerProfiler:
    def __init__(self, store: wasmtime.Store, module: wasmtime.Module, name: str, interval: float) -> None:
        self.store, self.engine, self.interval = store, store.engine, interval
        self._process_name = _name(name)
        self._module_name = _name(name)
        modules = (capi.wasmtime_guestprofiler_modules_t * 1)()
        modules[0].name = ctypes.pointer(self._module_name)
        modules[0].mod = module.ptr()
        self._profiler = capi.wasmtime_guestprofiler_new(
            self.engine.ptr(), ctypes.byref(self._process_name), int(interval * 1e9), modules, 1
        )
        self.sample_count = 0
        self._last_cpu = time.thread_time_ns()
        self._callback = _Callback(self._on_epoch_deadline)
        capi.wasmtime_store_epoch_deadline_callback(
            store.ptr(), self._callback, None, ctypes.cast(0, _NoFinalizer)
        )
        store.set_epoch_deadline(1)
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True)

    def _on_epoch_deadline(self, context, data, delta, kind):  # type: ignore[no-untyped-def]
        now = time.thread_time_ns()
        capi.wasmtime_guestprofiler_sample(self._profiler, self.store.ptr(), max(0, now - self._last_cpu))
        self._last_cpu = now
        self.sample_count += 1
        delta[0] = 1
        kind[0] = 0
        return 0

    def _tick(self) -> None:
        next_tick = time.monotonic() + self.interval
        while not self._stop.is_set():
            time.sleep(max(0.0, next_tick - time.monotonic()))
            self.engine.increment_epoch()
            next_tick += self.interval

    def start(self) -> None:
        self._ticker.start()

    def stop(self) -> None:
        self._stop.set()
        self._ticker.join()

    def finish(self) -> bytes:
        out = capi.wasm_byte_vec_t()
        error = capi.wasmtime_guestprofiler_finish(self._profiler, ctypes.byref(out))
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)
        data = ctypes.string_at(out.data, out.size)
        _ffi.wasm_byte_vec_delete(ctypes.byref(out))
        return data
