# What crosses _core's boundary: the C API table, the sampler state the epoch callback reads, the
# Python-facing Sampler and the HostCall records it returns. _core.pyx (with its _core_*.pxi parts)
# implements them; _test_utils cimports them.
from libc.stdint cimport int64_t, uint64_t

from wasmtime_gp._native.posix cimport pthread_mutex_t, pthread_t
from wasmtime_gp._native.wasmtime_capi cimport *
from wasmtime_gp._ticker cimport Subscription

# Host calls nested deeper than this (host -> wasm -> host ...) are still sampled, without their pending time.
cdef enum:
    HOST_DEPTH_MAX = 32

# The Wasmtime functions we call, resolved by dlsym from wasmtime-py's own library (_core_capi.pxi).
cdef struct CApi:
    wasmtime_guestprofiler_new_v19_fn guestprofiler_new_v19
    wasmtime_guestprofiler_new_v40_fn guestprofiler_new_v40
    wasmtime_guestprofiler_sample_fn guestprofiler_sample
    wasmtime_guestprofiler_finish_fn guestprofiler_finish
    wasmtime_guestprofiler_delete_fn guestprofiler_delete
    wasmtime_store_epoch_deadline_callback_set_fn store_epoch_deadline_callback
    wasmtime_context_set_epoch_deadline_fn context_set_epoch_deadline
    wasmtime_engine_increment_epoch_fn engine_increment_epoch
    wasmtime_engine_clone_fn engine_clone      # NULL before Wasmtime 24
    wasm_engine_delete_fn engine_delete
    wasm_byte_vec_delete_fn byte_vec_delete
    wasmtime_error_message_fn error_message
    wasmtime_error_delete_fn error_delete
    wasmtime_error_new_fn error_new
    wasmtime_trap_new_code_fn trap_new_code    # NULL before Wasmtime 34

# A sample taken late, when the guest came back from outside wasm (a host function nobody wrapped, such as
# WASI's): the ticks it missed meanwhile, and how the time since the tick that made it due was spent.
cdef struct OutsideStretch:
    uint64_t anchor                        # the Wasmtime sample's index (as HostCall.anchor)
    uint64_t samples                       # the intervals it stands for (>= 1)
    uint64_t on_cpu_samples                # of which on a CPU
    int64_t stretch_ns                     # from that tick to wasm's next epoch check
    int64_t on_cpu_ns                      # of which the guest's thread ran on a CPU

# The embedder's own epoch of one engine: how many times its code called Engine.increment_epoch(), counted
# apart from our ticks (_epochs.py observes the calls). Its deadlines are kept in these ticks.
cdef struct EmbedderEpochState:
    uint64_t ticks                         # counted just before each of the embedder's increments lands
    int refs                               # its EmbedderEpoch, and each SamplerState of the engine's stores

# The plain C state behind our epoch-deadline callback on one store, the callback's `void *data`: a Sampler's,
# or a guard's (a store of which we only keep the embedder's deadline). Every field is read and written
# under `lock`. Count invariant: `samples` (Wasmtime's samples, the index the next one will have) plus
# `host_extra` equals the number of rows the host-call splice (_host_frames.splice) writes, across rotations.
cdef struct SamplerState:
    pthread_mutex_t lock
    int refs                               # its Sampler, DeadlineKeepers, the store while our callback is set
    EmbedderEpochState *embedder           # the engine's embedder epoch (one reference)
    bint has_deadline                      # whether the embedder set an epoch deadline we saw
    uint64_t deadline                      # then, in embedder ticks: the guest traps once they reach it
    wasmtime_guestprofiler_t *wasmtime_profiler  # NULL once finished or dropped
    wasmtime_store_t *store                # NULL once the store has dropped our callback
    bint sampling                          # between start() and stop()
    bint interrupt                         # trap the guest at its next epoch check
    int64_t timeout_at_ns                  # CLOCK_MONOTONIC; 0: no timeout
    bint timed_out
    Subscription *subscription             # the shared ticker's clock for this engine, while sampling
    uint64_t callbacks                     # every call of on_epoch_deadline, sampling or not
    uint64_t samples                       # Wasmtime's samples (its table's length, across rotations)
    int64_t host_extra                     # samples host calls add to or remove from Wasmtime's table
    uint64_t interval_ns
    uint64_t sampling_ns                   # time spent inside wasmtime_guestprofiler_sample (estimated)
    uint64_t own_clock_samples             # samples whose CPU time their thread read itself (not the ticker)
    uint64_t budget_ppm                    # the overhead budget, in millionths of the guest's time (0: none)
    uint64_t stride                        # intervals per sample: 1, more while a sample costs over budget
    uint64_t cost_ns                       # with a budget: a running mean of one sample's cost
    uint64_t strides                       # the sum of every Wasmtime sample's stride
    pthread_t last_thread
    int64_t last_cpu_ns
    bint have_last
    int64_t last_wall_ns                   # CLOCK_MONOTONIC at the last sample's epoch check
    long last_waits                        # the thread's voluntary context switches then (-1: unknown)
    long last_preemptions                  # and its involuntary ones
    OutsideStretch *outside                # late samples after time outside wasm, until taken by finish()
    size_t outside_len
    size_t outside_cap
    uint64_t last_sample_ticks             # the clock's ticks at the last sample: host calls count from it
    int host_depth                         # wrapped host calls in progress (nested through wasm)
    uint64_t host_pending[HOST_DEPTH_MAX]  # intervals each of them ran before calling back into wasm


cdef class HostCall:
    """One wrapped host call that earned samples, anchored on a real Wasmtime sample."""
    cdef readonly uint64_t anchor          # index of the anchor among all Wasmtime samples of the sampler
    cdef readonly uint64_t samples         # earned by the call itself (0: the anchor only marks its stack)
    cdef readonly int64_t wall_ns
    cdef readonly str name                 # "module.name"
    cdef readonly uint64_t first_nested    # index of the first Wasmtime sample taken while the call ran


cdef class EmbedderEpoch:
    """The embedder's epoch of one engine (a reference to its EmbedderEpochState)."""
    cdef EmbedderEpochState *state


cdef class DeadlineKeeper:
    """Keeps the embedder's epoch deadline of one store, in the SamplerState our callback on it reads."""
    cdef SamplerState *state               # one reference
    cdef bint attached                     # our callback was set on the store with this state


cdef class Sampler:
    """One Wasmtime guest profiler attached to one store. Methods hold the GIL."""
    cdef SamplerState *state
    cdef Subscription *subscription        # to the shared ticker, while running
    cdef uint64_t engine_key
    cdef bint spin_ticker
    cdef readonly int64_t ticker_interval_ns
    cdef uint64_t ticks_at_start
    cdef int64_t started_ns
    cdef readonly uint64_t ticks_seen      # ticks of the engine's clock while this sampler ran
    cdef readonly int64_t running_ns       # and for how long it ran
    cdef bint owns_engine
    cdef wasm_engine_t *engine
    cdef list host_calls                   # HostCalls that got samples, until their profile is finished
    cdef int64_t timeout_left_ns           # what is left of the timeout while stopped (0: none)
    cdef uint64_t first_sample             # index of the current profile's first Wasmtime sample
    cdef uint64_t first_strides            # and the sampler's strides before it
    cdef tuple completed                   # finish()'s (JSON, host calls, first, end sample), kept
    cdef str finish_error                  # or why Wasmtime could not write the profile

    cdef host_enter(self)
    cdef host_exit(self, tuple entered, str name, size_t context_ptr)
    cdef list take_host_calls(self, uint64_t before)
    cdef list take_outside(self, uint64_t before)
    cdef uint64_t read_locked(self, uint64_t *field) noexcept
