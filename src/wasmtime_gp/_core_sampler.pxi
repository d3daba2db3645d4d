# Part of _core.pyx: Sampler, the Python-facing class over one SamplerState, with the host-call tick
# arithmetic, and the HostCall records it hands to _host_frames.

from libc.stdint cimport int64_t, uint64_t, UINT64_MAX
from libc.stdlib cimport calloc
from libc.string cimport memmove

from wasmtime_gp._native.atomics cimport (
    gp_add_u64_ordered, gp_load_i64, gp_load_u64, gp_load_u64_ordered,
)
from wasmtime_gp._native.calls cimport gp_wasm_enter, gp_wasm_leave
from wasmtime_gp._native.clock cimport monotonic_ns, thread_cpu_ns, thread_switches
from wasmtime_gp._native.posix cimport (
    pthread_mutex_init, pthread_mutex_lock, pthread_mutex_unlock, pthread_self,
)
from wasmtime_gp._ticker cimport Subscription, ticker_subscribe, ticker_unsubscribe

from wasmtime_gp._errors import GuestProfilerError, ProfilerStateError  # the package's own errors

cdef class HostCall:
    """One wrapped host call that earned samples (its fields are described in _core.pxd)."""

    def __init__(self, uint64_t anchor, uint64_t samples, int64_t wall_ns, str name, uint64_t first_nested):
        self.anchor = anchor
        self.samples = samples
        self.wall_ns = wall_ns
        self.name = name
        self.first_nested = first_nested

    def __repr__(self):
        return (f"HostCall(anchor={self.anchor}, samples={self.samples}, wall_ns={self.wall_ns}, "
                f"name={self.name!r}, first_nested={self.first_nested})")


cdef class EmbedderEpoch:
    """The embedder's own epoch of one engine: its Engine.increment_epoch() calls, none of our ticks."""

    def __cinit__(self):
        self.state = <EmbedderEpochState *>calloc(1, sizeof(EmbedderEpochState))
        if self.state == NULL:
            raise MemoryError()
        self.state.refs = 1

    def __dealloc__(self):
        if self.state != NULL:
            embedder_epoch_release(self.state)

    def tick(self) -> None:
        """Count one of the embedder's increments; call it just before the increment itself. Any thread."""
        gp_add_u64_ordered(&self.state.ticks, 1)

    @property
    def ticks(self) -> int:
        return gp_load_u64_ordered(&self.state.ticks)


cdef class DeadlineKeeper:
    """Keeps the embedder's epoch deadline of one store where our callback on it reads it (a Sampler's state,
    or a guard's). Methods hold the GIL; set_deadline() runs where the embedder calls it, on the store's
    thread."""

    def __dealloc__(self):
        if self.state != NULL:
            sampler_release(self.state)

    def set_deadline(self, size_t context_ptr, uint64_t ticks) -> None:
        """What Store.set_epoch_deadline(ticks) asks: trap once the embedder's epoch is `ticks` further."""
        cdef SamplerState *s = self.state
        cdef uint64_t now, left
        cdef bint sampling, attached
        pthread_mutex_lock(&s.lock)
        now = gp_load_u64_ordered(&s.embedder.ticks)
        s.has_deadline = True
        s.deadline = now + ticks if ticks <= UINT64_MAX - now else UINT64_MAX
        left = embedder_ticks_left(s)
        sampling = s.sampling
        attached = s.store != NULL
        pthread_mutex_unlock(&s.lock)
        if not attached:  # only recorded: Wasmtime keeps the deadline alone, as asked
            left = ticks
        elif sampling:  # the callback comes at the next tick of either kind and plans from there
            left = min(left, 1)
        api.context_set_epoch_deadline(<wasmtime_context_t *>context_ptr, left)

    @property
    def guards(self) -> bool:
        """Whether our callback on the store reads this deadline (a guard's or a profiler's), or it is only
        recorded."""
        pthread_mutex_lock(&self.state.lock)
        attached = self.state.store != NULL
        pthread_mutex_unlock(&self.state.lock)
        return attached

    @property
    def guarded(self) -> bool:
        """Whether our callback on the store ever read this deadline: if it no longer does while the store
        lives, another callback replaced it."""
        return self.attached

    def after_fork_in_child(self) -> None:
        """In a forked child: the lock may have been held by a thread the child does not have."""
        pthread_mutex_init(&self.state.lock, NULL)


def keep_deadline(EmbedderEpoch embedder, size_t store_ptr=0, DeadlineKeeper previous=None) -> DeadlineKeeper:
    """A keeper of the embedder's deadline on a store we do not profile, taking it over from `previous`.

    With `store_ptr`, a guard: our callback on the store, so that the deadline counts the embedder's ticks
    only. Without, the deadline is only recorded (for a profiler made on the store later) and Wasmtime keeps
    it alone: set_deadline() then sets it exactly as Store.set_epoch_deadline would. GIL held, on the
    store's thread.
    """
    cdef DeadlineKeeper keeper = DeadlineKeeper.__new__(DeadlineKeeper)
    keeper.state = state_new(embedder.state)
    if keeper.state == NULL:
        raise MemoryError()
    if store_ptr:
        state_attach(
            keeper.state, <wasmtime_store_t *>store_ptr, NULL if previous is None else previous.state)
        keeper.attached = True
    return keeper


def wasm_call_enter() -> None:
    """This thread enters wasm through wasmtime-py (a call, or an instantiation that runs a start function);
    wasm_call_leave() when it returns. Only time inside the innermost such call can be the guest's time
    outside wasm."""
    gp_wasm_enter(monotonic_ns())


def wasm_call_leave() -> None:
    gp_wasm_leave()


def _set_outside_min_ns(int64_t ns) -> int:
    """For benchmarks/outside_wasm.py, which measures what it should be: set the lateness from which a sample
    may be outside wasm (0: every late sample is kept, with its timings); return the previous value."""
    global outside_min_ns
    previous, outside_min_ns = outside_min_ns, max(0, ns)
    return previous


cdef class Sampler:
    """One Wasmtime guest profiler attached to one store (fields in _core.pxd). Methods hold the GIL."""

    def __cinit__(self, size_t engine_ptr, uint64_t engine_key, size_t store_ptr, bytes process_name,
                  uint64_t interval_ns, list modules, bint spin_ticker, int64_t ticker_interval_ns,
                  int64_t timeout_ns, EmbedderEpoch embedder not None, DeadlineKeeper previous,
                  size_t context_ptr, uint64_t budget_ppm):
        if not api_bound:
            raise RuntimeError("the wasmtime C API is not bound")
        cdef _NewArgs args = _NewArgs(engine_ptr, process_name, interval_ns, modules)
        cdef uint64_t left
        self.state = state_new(embedder.state)
        if self.state == NULL:
            raise MemoryError()
        self.state.interval_ns = interval_ns
        self.state.budget_ppm = budget_ppm
        self.state.stride = 1
        with nogil:
            self.state.wasmtime_profiler = args.call_new()
        self.host_calls = []
        self.timeout_left_ns = timeout_ns
        self.engine_key = engine_key
        self.spin_ticker = spin_ticker
        self.ticker_interval_ns = ticker_interval_ns
        # Our own reference keeps the engine alive even if wasmtime-py's Engine is closed.
        if api.engine_clone != NULL:
            self.engine = api.engine_clone(<const wasm_engine_t *>engine_ptr)
            self.owns_engine = True
        else:
            self.engine = <wasm_engine_t *>engine_ptr
        state_attach(self.state, <wasmtime_store_t *>store_ptr, NULL if previous is None else previous.state)
        # From now on the store checks in at every tick of the engine (none while nothing ticks it), so that
        # start() from any thread takes effect at the next one, even inside a long guest call.
        pthread_mutex_lock(&self.state.lock)
        left = embedder_ticks_left(self.state)
        pthread_mutex_unlock(&self.state.lock)
        api.context_set_epoch_deadline(<wasmtime_context_t *>context_ptr, min(left, 1))

    def deadline_keeper(self) -> DeadlineKeeper:
        """A keeper of the embedder's deadline on this sampler's store (it may outlive the sampler)."""
        cdef DeadlineKeeper keeper = DeadlineKeeper.__new__(DeadlineKeeper)
        pthread_mutex_lock(&self.state.lock)
        self.state.refs += 1
        pthread_mutex_unlock(&self.state.lock)
        keeper.state = self.state
        keeper.attached = True
        return keeper

    def __dealloc__(self):
        cdef wasmtime_guestprofiler_t *unfinished = NULL
        if self.state != NULL:
            self.stop()
            pthread_mutex_lock(&self.state.lock)
            unfinished = self.state.wasmtime_profiler
            self.state.wasmtime_profiler = NULL
            pthread_mutex_unlock(&self.state.lock)
            if unfinished != NULL:
                api.guestprofiler_delete(unfinished)
            sampler_release(self.state)
            self.state = NULL
        if self.owns_engine and self.engine != NULL:
            api.engine_delete(self.engine)
            self.engine = NULL

    # start(), stop() and finish() run no Python code, so a Python signal handler cannot run in the middle
    # of one (it runs between bytecodes of the main thread); each is idempotent.

    def start(self) -> bool:
        """Begin sampling; False if finished (nothing to start). A no-op while running. Any thread: the
        store checks in at the engine's next tick, and samples from then on, even inside a running call.

        With a timeout left, the guest traps once that much wall-clock time has passed from now.
        """
        cdef SamplerState *s = self.state
        cdef Subscription *subscription
        cdef int64_t timeout_ns = self.timeout_left_ns
        if self.completed is not None or self.finish_error is not None:
            return False
        if self.subscription != NULL:
            return True
        subscription = ticker_subscribe(
            self.engine_key, self.engine, self.ticker_interval_ns, self.spin_ticker)
        if subscription == NULL:
            raise GuestProfilerError("could not start the ticker thread (out of memory or threads)")
        self.subscription = subscription
        self.ticks_at_start = gp_load_u64(&subscription.clock.ticks)
        self.started_ns = monotonic_ns()
        pthread_mutex_lock(&s.lock)
        s.subscription = subscription
        s.sampling = s.store != NULL and s.wasmtime_profiler != NULL
        s.timeout_at_ns = monotonic_ns() + timeout_ns if timeout_ns > 0 else 0
        s.last_thread = pthread_self()
        s.last_cpu_ns = thread_cpu_ns()
        s.have_last = s.last_cpu_ns >= 0
        s.last_wall_ns = monotonic_ns()
        if not thread_switches(&s.last_waits, &s.last_preemptions):
            s.last_waits = -1
        s.last_sample_ticks = self.ticks_at_start
        pthread_mutex_unlock(&s.lock)
        return True

    @property
    def running(self) -> bool:
        return self.subscription != NULL

    @property
    def finished(self) -> bool:
        return self.completed is not None or self.finish_error is not None

    def interrupt(self) -> None:
        """Trap the guest at its next epoch check (after taking that sample). Safe from any thread."""
        pthread_mutex_lock(&self.state.lock)
        self.state.interrupt = True
        pthread_mutex_unlock(&self.state.lock)
        # One tick of our own: the deadline may be far (stopped) or the ticker slow.
        api.engine_increment_epoch(self.engine)

    def after_fork_in_child(self) -> None:
        """In a forked child: stop without the ticker thread, which the child does not have (one thread runs).

        The sampler's lock may have been held by a thread that did not survive the fork: it is made anew.
        """
        pthread_mutex_init(&self.state.lock, NULL)
        self.state.sampling = False
        self.state.subscription = NULL
        self.state.timeout_at_ns = 0
        self.state.host_depth = 0
        if self.subscription != NULL:
            ticker_unsubscribe(self.subscription)  # made in the parent: only freed
            self.subscription = NULL

    def stop(self) -> bool:
        """Stop sampling and leave the ticker, keeping what is left of the timeout; whether it was running."""
        cdef Subscription *subscription = self.subscription
        pthread_mutex_lock(&self.state.lock)
        if self.state.timeout_at_ns != 0:
            self.timeout_left_ns = max(1, self.state.timeout_at_ns - monotonic_ns())
        self.state.timeout_at_ns = 0
        self.state.sampling = False
        self.state.subscription = NULL
        pthread_mutex_unlock(&self.state.lock)
        if subscription != NULL:
            self.subscription = NULL
            self.ticks_seen += gp_load_u64(&subscription.clock.ticks) - self.ticks_at_start
            self.running_ns += monotonic_ns() - self.started_ns
            with nogil:
                ticker_unsubscribe(subscription)
            return True
        return False

    def finish(self) -> tuple:
        """Stop, finish the wasmtime profiler; return (its JSON, the host calls and the stretches outside wasm
        anchored in it, the indices of its first and past its last Wasmtime sample, the intervals its Wasmtime
        samples stand for). Kept: every later call returns the same. GuestProfilerError if Wasmtime failed."""
        cdef wasmtime_guestprofiler_t *p
        if self.completed is None and self.finish_error is None:
            self.stop()
            pthread_mutex_lock(&self.state.lock)
            p = self.state.wasmtime_profiler
            self.state.wasmtime_profiler = NULL
            end = self.state.samples
            strides = self.state.strides - self.first_strides
            pthread_mutex_unlock(&self.state.lock)
            if p == NULL:
                self.finish_error = "the profiler was already finished"
            else:
                # What belongs to this profile is taken before the GIL is released (a rotate() elsewhere).
                calls, outside, first = self.take_host_calls(end), self.take_outside(end), self.first_sample
                try:
                    self.completed = (finish_profiler(p), calls, outside, first, end, strides)
                except GuestProfilerError as exc:
                    self.finish_error = str(exc)
        if self.finish_error is not None:
            raise GuestProfilerError(self.finish_error)
        return self.completed

    def rotate(self, bytes process_name, list modules) -> tuple:
        """Swap in a new wasmtime profiler and finish the old one; return what finish() does for it (its JSON,
        host calls, stretches outside wasm, first and past-last Wasmtime sample, the intervals they stand
        for).

        The swap happens under the sampler's lock, and what belongs to the old profile (host calls, its
        first sample) is taken with the GIL before it is released: every sample lands in exactly one
        profile, with no lock of the caller's. Any thread; the modules must be open (the caller checks).
        """
        cdef _NewArgs args = _NewArgs(<size_t>self.engine, process_name, self.state.interval_ns, modules)
        cdef wasmtime_guestprofiler_t *fresh
        cdef wasmtime_guestprofiler_t *old
        cdef uint64_t samples, strides
        with nogil:
            fresh = args.call_new()
        pthread_mutex_lock(&self.state.lock)
        old = self.state.wasmtime_profiler
        if old != NULL:
            self.state.wasmtime_profiler = fresh
        samples = self.state.samples
        strides = self.state.strides
        pthread_mutex_unlock(&self.state.lock)
        if old == NULL:
            api.guestprofiler_delete(fresh)
            raise ProfilerStateError("cannot rotate(): the profiler is finished")
        calls, outside = self.take_host_calls(samples), self.take_outside(samples)
        first, first_strides = self.first_sample, self.first_strides
        self.first_sample, self.first_strides = samples, strides
        return finish_profiler(old), calls, outside, first, samples, strides - first_strides

    # -- host calls (see host_calls.py): entered and left on the guest's thread, GIL held

    def host_call(self, function, tuple args, str name, size_t context_ptr):
        """Call a wrapped host function on the guest's thread, its time recorded as a host call."""
        entered = self.host_enter()
        if entered is None:
            return function(*args)
        try:
            return function(*args)
        finally:
            self.host_exit(entered, name, context_ptr)

    cdef host_enter(self):
        """A host function starts: return what host_exit() needs, or None when not sampling."""
        cdef SamplerState *s = self.state
        if self.subscription == NULL:
            return None
        pthread_mutex_lock(&s.lock)
        samples = s.samples
        if s.host_depth < HOST_DEPTH_MAX:
            s.host_pending[s.host_depth] = 0
        s.host_depth += 1
        pthread_mutex_unlock(&s.lock)
        return (monotonic_ns(), samples)

    cdef host_exit(self, tuple entered, str name, size_t context_ptr):
        """A host function returns (or raises): give it the samples of the intervals it spanned.

        Every whole interval since the last sample (before the call, or in wasm it called back into) is
        the call's. One real sample, taken here while the caller's wasm frames are still on the stack,
        anchors them (_host_frames.py adds the rest), and the caller's next epoch deadline is set here.
        """
        cdef SamplerState *s = self.state
        cdef Subscription *subscription = self.subscription
        cdef int64_t ended = monotonic_ns()
        cdef int64_t started = entered[0]
        cdef uint64_t samples_before = entered[1]
        cdef uint64_t ticks = 0, step = 1, since, own, pending = 0, nested, anchor, left
        if subscription != NULL:
            ticks = gp_load_u64(&subscription.clock.ticks)
            step = own_ticks(s, gp_load_i64(&subscription.clock.interval_ns))
        pthread_mutex_lock(&s.lock)
        if s.host_depth > 0:  # 0 after a fork from inside a host call: the child starts the count afresh
            s.host_depth -= 1
            if s.host_depth < HOST_DEPTH_MAX:
                pending = s.host_pending[s.host_depth]
        if (subscription == NULL or not (s.sampling and s.wasmtime_profiler != NULL and s.store != NULL)
                or s.samples < samples_before):
            pthread_mutex_unlock(&s.lock)
            return
        since = ticks - s.last_sample_ticks if ticks >= s.last_sample_ticks else 0
        own = since // step
        nested = s.samples - samples_before
        if own + pending == 0 and nested == 0:
            pthread_mutex_unlock(&s.lock)
            return
        anchor = s.samples
        take_sample(s, ended, thread_cpu_ns(), True)
        s.own_clock_samples += 1
        # The anchor is one of the call's samples; without samples of its own it only marks the stack.
        s.host_extra += <int64_t>(own + pending) - 1
        # Keep the part of an interval not yet sampled, and have the caller's wasm sample when it is
        # up: without this, it would take a sample for ticks just given to this call.
        s.last_sample_ticks += own * step
        gp_store_u64_release(&subscription.guest_cpu_from_tick, s.last_sample_ticks + step)
        left = embedder_ticks_left(s)
        pthread_mutex_unlock(&s.lock)
        if own:
            api.context_set_epoch_deadline(
                <wasmtime_context_t *>context_ptr, min(step - (since - own * step), left))
        self.host_calls.append(HostCall(anchor, own + pending, ended - started, name, samples_before))

    cdef list take_host_calls(self, uint64_t before):
        """Remove and return the host calls whose anchor sample has an index below `before`."""
        taken = [call for call in self.host_calls if (<HostCall>call).anchor < before]
        self.host_calls = [call for call in self.host_calls if (<HostCall>call).anchor >= before]
        return taken

    cdef list take_outside(self, uint64_t before):
        """Remove and return, as (anchor, samples, on-CPU samples, stretch ns, on-CPU ns), the stretches
        outside wasm whose sample has an index below `before` (the callback appends them in index order)."""
        cdef SamplerState *s = self.state
        cdef size_t taken = 0, i
        cdef OutsideStretch stretch
        cdef list out = []
        pthread_mutex_lock(&s.lock)
        while taken < s.outside_len and s.outside[taken].anchor < before:
            taken += 1
        for i in range(taken):
            stretch = s.outside[i]
            out.append((stretch.anchor, stretch.samples, stretch.on_cpu_samples, stretch.stretch_ns,
                        stretch.on_cpu_ns))
        if taken:  # (none taken: s.outside may be NULL, and NULL + 0 is undefined behaviour in C)
            memmove(s.outside, s.outside + taken, (s.outside_len - taken) * sizeof(OutsideStretch))
            s.outside_len -= taken
        pthread_mutex_unlock(&s.lock)
        return out

    cdef uint64_t read_locked(self, uint64_t *field) noexcept:
        """One field of the state, read under its lock (GIL held)."""
        cdef uint64_t value
        pthread_mutex_lock(&self.state.lock)
        value = field[0]
        pthread_mutex_unlock(&self.state.lock)
        return value

    @property
    def sample_count(self) -> int:
        """Samples taken so far, host-call samples included."""
        pthread_mutex_lock(&self.state.lock)
        value = self.state.samples + self.state.host_extra
        pthread_mutex_unlock(&self.state.lock)
        return value

    @property
    def wasmtime_sample_count(self) -> int:
        """Samples in Wasmtime's tables (across rotations): the index the next one will have."""
        return self.read_locked(&self.state.samples)

    @property
    def sampling_ns(self) -> int:
        return self.read_locked(&self.state.sampling_ns)

    @property
    def own_clock_samples(self) -> int:
        """Samples whose CPU time the guest's thread read from its own clock (late ones, after a host call,
        or the first on a thread); every other one took the ticker's reading of that clock at its tick."""
        return self.read_locked(&self.state.own_clock_samples)

    @property
    def timed_out(self) -> bool:
        pthread_mutex_lock(&self.state.lock)
        value = self.state.timed_out
        pthread_mutex_unlock(&self.state.lock)
        return value

    @property
    def store_attached(self) -> bool:
        """False once the store was deleted or another epoch-deadline callback replaced ours."""
        pthread_mutex_lock(&self.state.lock)
        attached = self.state.store != NULL
        pthread_mutex_unlock(&self.state.lock)
        return attached
