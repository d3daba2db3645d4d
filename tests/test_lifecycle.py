"""start / stop / finish / save, traps, other threads, drop order, and many cycles."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
import wasmtime
from conftest import (
    instantiate,
    make_engine,
    native_thread_count,
    read_profile,
    rss_bytes,
    run_isolated,
    sample_bounds,
    thread_cpu_time,
)
from guests import CHAIN

from wasmtime_gp import GuestProfiler, ProfilerStateError, ProfilerValueError


def test_states_and_properties(chain):
    profiler = GuestProfiler(chain.store, [chain.module], interval=0.002)
    assert (profiler.running, profiler.finished, profiler.sample_count) == (False, False, 0)
    assert profiler.interval == 0.002
    profiler.start()
    assert profiler.running
    with pytest.raises(ProfilerStateError, match="already running"):
        profiler.start()
    profiler.stop()
    profiler.stop()  # idempotent
    assert not profiler.running
    profiler.finish()
    assert profiler.finished and not profiler.running
    profiler.stop()  # still a no-op
    for call in (profiler.start, profiler.finish, lambda: profiler.save("never.json")):
        with pytest.raises(ProfilerStateError, match="finished"):
            call()


def test_start_after_stop_continues_the_same_profile(chain, spins_for):
    profiler = GuestProfiler(chain.store, [chain.module], interval=0.001)
    with profiler:
        chain.call("run", spins_for(0.1))
    first = profiler.sample_count
    chain.call("run", spins_for(0.1))  # not profiled
    assert profiler.sample_count == first
    with profiler:
        chain.call("run", spins_for(0.1))
    assert profiler.sample_count > first
    assert len(read_profile(profiler.finish()).stacks) == profiler.sample_count


def test_exception_in_the_block_propagates_and_keeps_the_samples(chain, spins_for):
    profiler = GuestProfiler(chain.store, [chain.module], interval=0.001)
    cpu_before = time.thread_time()
    with pytest.raises(KeyError, match="boom"), profiler:
        chain.call("run", spins_for(0.1))
        raise KeyError("boom")
    guest_cpu = time.thread_time() - cpu_before
    assert not profiler.running
    kept = read_profile(profiler.finish()).stacks.count(("outer", "middle", "inner"))
    assert kept >= max(1, sample_bounds(profiler, guest_cpu)[0] - 1)  # about 100 on a free machine


def test_trap_mid_run_keeps_every_sample(chain, spins_for):
    profiler = GuestProfiler(chain.store, [chain.module], interval=0.001)
    cpu_before = time.thread_time()
    with pytest.raises(wasmtime.Trap), profiler:
        chain.call("run_then_trap", spins_for(0.2))
    guest_cpu = time.thread_time() - cpu_before
    taken = profiler.sample_count
    stacks = read_profile(profiler.finish()).stacks
    assert taken >= max(1, sample_bounds(profiler, guest_cpu)[0])  # about 200 when free
    assert len(stacks) == taken
    assert ("doomed", "middle", "inner") in stacks
    chain.call("run", 10)  # the store is still usable


@pytest.mark.parametrize("end", ["stop", "finish"])
def test_stop_or_finish_from_another_thread_while_the_guest_runs(chain, spins_for, end):
    profiler = GuestProfiler(chain.store, [chain.module], interval=0.0005)
    profiler.start()
    guest = threading.Thread(target=chain.call, args=("run", spins_for(1.0)))
    guest.start()
    time.sleep(0.3)
    guest_cpu = thread_cpu_time(guest)  # the guest's thread ran only while profiled, so far
    result = getattr(profiler, end)()
    count = profiler.sample_count
    assert guest.is_alive(), "the guest should still be running when the profiler ends"
    guest.join()
    assert profiler.sample_count == count, "no sample may be taken after stop/finish returns"
    assert count >= max(1, sample_bounds(profiler, guest_cpu)[0])  # about 600 on a free machine
    data = result if end == "finish" else profiler.finish()
    assert len(read_profile(data).stacks) == count


def test_save_writes_atomically_and_returns_the_path(chain, spins_for, tmp_path):
    with GuestProfiler(chain.store, [chain.module]) as profiler:
        chain.call("run", spins_for(0.05))
    path = profiler.save(tmp_path / "out.profile.json")
    assert path == tmp_path / "out.profile.json"
    assert json.loads(path.read_bytes())["threads"]
    assert os.listdir(tmp_path) == ["out.profile.json"]  # no temporary file left behind


def test_save_to_a_bad_place_fails_before_consuming_the_profile(chain, tmp_path):
    profiler = GuestProfiler(chain.store, [chain.module])
    with pytest.raises(ProfilerValueError, match="not a directory"):
        profiler.save(tmp_path / "missing" / "out.json")
    with pytest.raises(ProfilerValueError, match="is a directory"):
        profiler.save(tmp_path)
    assert not profiler.finished
    profiler.save(tmp_path / "out.json")


def test_a_new_profiler_on_the_store_once_the_previous_one_finished(chain, spins_for):
    first = GuestProfiler(chain.store, [chain.module])
    with pytest.raises(ProfilerStateError, match="already has an unfinished"):
        GuestProfiler(chain.store, [chain.module])
    first.finish()
    cpu_before = time.thread_time()
    with GuestProfiler(chain.store, [chain.module], interval=0.001) as second:
        chain.call("run", spins_for(0.05))
    assert second.sample_count >= sample_bounds(second, time.thread_time() - cpu_before)[0]  # about 50
    second.finish()


def test_dropping_an_unfinished_profiler_frees_the_store(chain, spins_for):
    profiler = GuestProfiler(chain.store, [chain.module])
    profiler.start()
    del profiler
    cpu_before = time.thread_time()
    with GuestProfiler(chain.store, [chain.module], interval=0.001) as profiler:
        chain.call("run", spins_for(0.05))
    assert profiler.sample_count >= sample_bounds(profiler, time.thread_time() - cpu_before)[0]  # about 50


def test_store_closed_before_finish_keeps_the_profile():
    result = run_isolated(
        """
        from conftest import instantiate, read_profile
        from guests import CHAIN
        from wasmtime_gp import GuestProfiler, ProfilerStateError
        guest = instantiate(CHAIN)
        with GuestProfiler(guest.store, [guest.module], interval=0.001) as profiler:
            guest.call("run", 50_000_000)
        guest.store.close()
        try:
            profiler.start()
        except ProfilerStateError as exc:
            print("start:", exc)
        print("stacks:", len(read_profile(profiler.finish()).stacks) == profiler.sample_count > 0)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "start: the profiler lost its store" in result.stdout
    assert "stacks: True" in result.stdout


def test_engine_and_module_closed_while_sampling():
    result = run_isolated(
        """
        from conftest import instantiate
        from guests import CHAIN
        import time
        from wasmtime_gp import GuestProfiler, ClosedObjectError, _core
        guest = instantiate(CHAIN)
        run = guest.func("run")
        with GuestProfiler(guest.store, [guest.module], interval=0.0001) as profiler:
            guest.module.close()
            guest.engine.close()  # wasmtime-py's handle; the store holds its own engine reference
            # The guest's CPU while the profiler runs only: making the profiler (it serializes the module)
            # took 0.17 s of CPU in a loaded CI cell, and counted, it made the guest look never descheduled.
            cpu_before = time.thread_time()
            run(guest.store, 100_000_000)
            guest_cpu = time.thread_time() - cpu_before
        native = profiler._native
        print("run:", native.ticks_seen, native.running_ns / 1e9, guest_cpu)
        try:
            profiler.start()
            profiler.stop()
            print("restart: ok")
        except ClosedObjectError as exc:
            print("restart:", exc)
        print("samples:", profiler.sample_count, "clone:", _core.can_clone_engine(), len(profiler.finish()) > 0)
        """
    )
    assert result.returncode == 0, result.stderr
    words = result.stdout.split()
    samples, can_clone = int(words[words.index("samples:") + 1]), words[words.index("clone:") + 1] == "True"
    ticks, running, guest_cpu = (float(word) for word in words[words.index("run:") + 1 :][:3])
    if can_clone:  # our own engine reference keeps the ticker going: samples at the ticks it managed
        assert samples >= max(1, 0.5 * ticks * min(1.0, guest_cpu / running) - 2)  # about 1000 when free
        assert "restart: ok" in result.stdout
    else:  # Wasmtime < 24: closing the engine stops the ticker first, and it cannot start again
        assert samples == 0 and "restart: the engine is closed" in result.stdout
    assert result.stdout.rstrip().endswith("True")


def test_profiler_dropped_before_store_and_store_before_profiler():
    result = run_isolated(
        """
        import gc
        from conftest import instantiate
        from guests import CHAIN
        from wasmtime_gp import GuestProfiler
        for order in ("profiler-first", "store-first"):
            guest = instantiate(CHAIN)
            profiler = GuestProfiler(guest.store, [guest.module], interval=0.0001)
            profiler.start()
            guest.call("run", 5_000_000)
            if order == "profiler-first":
                del profiler
                gc.collect()
                guest.call("run", 5_000_000)  # the store runs on with our dormant callback
                guest.store.close()
            else:
                guest.store.close()
                del guest
                gc.collect()
                profiler.stop()
                del profiler
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def assert_leaves_nothing(work, what: str) -> None:  # type: ignore[no-untyped-def]
    """RSS flat (under 8 MiB of growth), and no thread or file descriptor left behind by `work()`."""
    threads_before, fds_before, rss_before = native_thread_count(), open_fds(), rss_bytes()
    work()
    growth = rss_bytes() - rss_before
    print(f"RSS growth over {what}: {growth / 1024:.0f} KiB")
    assert growth < 8 * 1024 * 1024
    assert native_thread_count(threads_before) == threads_before
    assert open_fds() == fds_before


@pytest.mark.rss
def test_ten_thousand_start_finish_cycles_leave_memory_threads_and_fds_flat(spins_for):
    guest = instantiate(CHAIN)
    spins = spins_for(0.00005)

    def cycles(count):
        for _ in range(count):
            profiler = GuestProfiler(guest.store, [guest.module], interval=0.0001)
            with profiler:
                guest.call("run", spins)
            profiler.finish()

    cycles(500)  # warm-up: allocator pools, caches
    assert_leaves_nothing(lambda: cycles(10_000), "10,000 cycles")


@pytest.mark.rss
def test_a_thousand_profilers_whose_stores_are_dropped_first_leave_nothing_behind(spins_for):
    engine = make_engine()
    module = wasmtime.Module(engine, CHAIN)
    spins = spins_for(0.0002)

    def cycles(count):
        for index in range(count):
            store = wasmtime.Store(engine)
            run = wasmtime.Instance(store, module, []).exports(store)["run"]
            profiler = GuestProfiler(store, [module], interval=0.0001)
            with profiler:
                run(store, spins)
            del run
            store.close()  # the store goes first: the profiler must not touch it again
            if index % 2:
                assert profiler.profile().sample_count >= 0  # still finishes, with what it took
            del profiler

    cycles(100)
    assert_leaves_nothing(lambda: cycles(1000), "1,000 store-first drops")


def test_save_gives_the_file_the_usual_mode(chain, tmp_path):
    old = os.umask(0o022)
    try:
        path = GuestProfiler(chain.store, [chain.module]).save(tmp_path / "out.json")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
