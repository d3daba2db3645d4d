"""A small profiled test suite for the regression gate (`--wasm-profile-baseline`): test_pytest_plugin.py and
benchmarks/gate.py copy it into a fresh directory as test_gate_suite.py and run pytest on it.

GATE_SLOWDOWN=0.2 makes the `render` function of test_pipeline do 20 % more work (nothing else changes);
GATE_MINIGZIP=PATH adds a test that profiles zlib's minigzip (a WASI program) compressing text.
"""

import os

import pytest
import wasmtime

from wasmtime_gp.example import guest_wat, profiling_engine

# parse and render: the same loop, each given its own number of rounds.
PIPELINE = """
(module $pipeline
  (func $spin (param $rounds i32) (result i32)
    (local $x i32)
    (local.set $x (i32.const 2463534242))
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $rounds)))
        (local.set $x (i32.xor (local.get $x) (i32.shl (local.get $x) (i32.const 13))))
        (local.set $x (i32.xor (local.get $x) (i32.shr_u (local.get $x) (i32.const 17))))
        (local.set $x (i32.xor (local.get $x) (i32.shl (local.get $x) (i32.const 5))))
        (local.set $rounds (i32.sub (local.get $rounds) (i32.const 1)))
        (br $next)))
    (local.get $x))
  (func $parse (param $rounds i32) (result i32) (call $spin (local.get $rounds)))
  (func $render (param $rounds i32) (result i32) (call $spin (local.get $rounds)))
  (func (export "run") (param $parse i32) (param $render i32) (param $times i32) (result i32)
    (local $total i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $times)))
        (local.set $total (i32.add (local.get $total) (call $parse (local.get $parse))))
        (local.set $total (i32.add (local.get $total) (call $render (local.get $render))))
        (local.set $times (i32.sub (local.get $times) (i32.const 1)))
        (br $next)))
    (local.get $total)))
"""
ROUNDS = 200_000  # of each function per pass: a few hundred microseconds
PASSES = 1_000
SLOWDOWN = float(os.environ.get("GATE_SLOWDOWN", "0"))
MINIGZIP = os.environ.get("GATE_MINIGZIP")

pytestmark = pytest.mark.wasm_profile(interval=0.0001)


def instance(wat_or_module):
    engine = profiling_engine()
    store = wasmtime.Store(engine)
    module = wasmtime.Module(engine, wat_or_module) if isinstance(wat_or_module, str) else wat_or_module
    return store, module


def test_pipeline(wasm_profiler):
    store, module = instance(PIPELINE)
    run = wasmtime.Instance(store, module, []).exports(store)["run"]
    with wasm_profiler(store, [module]):
        run(store, ROUNDS, round(ROUNDS * (1 + SLOWDOWN)), PASSES)


# The bundled example's hot loop calls functions of three instructions 16 million times a step: where the
# samples land among them moved between runs of the same code (`mix` took 6 to 22 % of them on a 2-CPU VM), so
# far that no threshold worth having holds: its profiles are stored and compared by nobody.
@pytest.mark.wasm_baseline(max_growth=None)
def test_example(wasm_profiler):
    store, module = instance(guest_wat())
    run = wasmtime.Instance(store, module, []).exports(store)["run"]
    with wasm_profiler(store, [module]):
        run(store, 5)


@pytest.mark.skipif(MINIGZIP is None, reason="GATE_MINIGZIP is not set")
def test_minigzip(wasm_profiler, tmp_path):
    text = b"".join(b"gate sample %d tick %d words of text\n" % (k, k * 7919 % 1000) for k in range(150_000))
    (tmp_path / "input.txt").write_bytes(text)
    engine = profiling_engine()
    module = wasmtime.Module.from_file(engine, MINIGZIP)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    wasi.argv = ["minigzip", "-c", "-6", "/data/input.txt"]
    wasi.preopen_dir(str(tmp_path), "/data")
    wasi.stdout_file = str(tmp_path / "out.gz")
    store.set_wasi(wasi)
    start = linker.instantiate(store, module).exports(store)["_start"]
    with wasm_profiler(store, [module]):
        try:
            start(store)
        except wasmtime.ExitTrap as exit:
            assert exit.code == 0
