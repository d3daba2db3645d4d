# Declarations only: calls.h, the wasm calls the calling thread is in (thread-local).
from libc.stdint cimport int64_t

cdef extern from "calls.h" nogil:
    int gp_wasm_depth
    int64_t gp_wasm_entered_ns
