# Declarations only: calls.h, the wasm calls the calling thread is in (thread-local).
from libc.stdint cimport int64_t

cdef extern from "calls.h" nogil:
    int gp_wasm_depth
    void gp_wasm_enter(int64_t now)
    void gp_wasm_leave()
    int64_t gp_wasm_innermost_entry_ns()
