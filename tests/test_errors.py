"""Every bad input gets a clear exception, never an abort, a segfault or an empty profile.

Each case runs in its own interpreter: if one crashed the process, only that test fails.
"""

from __future__ import annotations

import errors_doc
import pytest
from conftest import run_isolated

from wasmtime_gp import _abi

SETUP = """
import math, wasmtime, wasmtime_gp
from conftest import instantiate, make_engine
from guests import CHAIN, NAMED
from wasmtime_gp import GuestProfiler
guest = instantiate(CHAIN)
store, module, engine = guest.store, guest.module, guest.engine
"""

# (case id, statements that must raise, exception class in wasmtime_gp, fragment of the message)
CASES = [
    (
        "no-epoch-interruption",
        (
            "plain = make_engine(epoch_interruption=False)\n"
            "GuestProfiler(wasmtime.Store(plain), [wasmtime.Module(plain, CHAIN)])"
        ),
        "EngineConfigError",
        "without epoch interruption",
    ),
    (
        "default-engine-store",
        "GuestProfiler(wasmtime.Store(), [module])",
        "EngineConfigError",
        "without epoch interruption",
    ),
    (
        "module-of-another-engine",
        "GuestProfiler(store, [wasmtime.Module(make_engine(), NAMED)])",
        "ModuleEngineError",
        "refuses module 'calculator'",
    ),
    (
        "module-of-another-engine-among-good-ones",
        "GuestProfiler(store, [module, ('stranger', wasmtime.Module(make_engine(), NAMED))])",
        "ModuleEngineError",
        "refuses module 'stranger'",
    ),
    ("closed-store", "store.close(); GuestProfiler(store, [module])", "ClosedObjectError", "store is closed"),
    (
        "closed-engine",
        "engine.close(); GuestProfiler(store, [module])",
        "ClosedObjectError",
        "engine is closed",
    ),
    (
        "closed-module",
        "module.close(); GuestProfiler(store, [module])",
        "ClosedObjectError",
        "module is closed",
    ),
    (
        "closed-module-in-pair",
        "module.close(); GuestProfiler(store, {'app': module})",
        "ClosedObjectError",
        "module is closed",
    ),
    ("empty-list", "GuestProfiler(store, [])", "ProfilerValueError", "modules is empty"),
    ("empty-mapping", "GuestProfiler(store, {})", "ProfilerValueError", "modules is empty"),
    (
        "store-not-a-store",
        "GuestProfiler(engine, [module])",
        "ProfilerTypeError",
        "store must be a wasmtime.Store",
    ),
    ("store-none", "GuestProfiler(None, [module])", "ProfilerTypeError", "store must be a wasmtime.Store"),
    ("modules-int", "GuestProfiler(store, 5)", "ProfilerTypeError", "modules must be a sequence"),
    ("modules-str", "GuestProfiler(store, 'module')", "ProfilerTypeError", "modules must be a sequence"),
    (
        "modules-bare-module",
        "GuestProfiler(store, module)",
        "ProfilerTypeError",
        "modules must be a sequence",
    ),
    ("module-item-int", "GuestProfiler(store, [module, 3])", "ProfilerTypeError", "modules[1]"),
    ("module-item-triple", "GuestProfiler(store, [('a', module, 1)])", "ProfilerTypeError", "modules[0]"),
    (
        "module-pair-not-module",
        "GuestProfiler(store, [('a', engine)])",
        "ProfilerTypeError",
        "module 'a' must be a wasmtime.Module",
    ),
    (
        "module-name-bytes",
        "GuestProfiler(store, [(b'a', module)])",
        "ProfilerTypeError",
        "module name must be a str",
    ),
    (
        "module-name-surrogate",
        "GuestProfiler(store, [('bad\\udc80name', module)])",
        "ProfilerValueError",
        "not valid Unicode",
    ),
    (
        "mapping-key-surrogate",
        "GuestProfiler(store, {'\\ud800': module})",
        "ProfilerValueError",
        "not valid Unicode",
    ),
    (
        "name-surrogate",
        "GuestProfiler(store, [module], name='\\udfff')",
        "ProfilerValueError",
        "not valid Unicode",
    ),
    ("name-int", "GuestProfiler(store, [module], name=7)", "ProfilerTypeError", "name must be a str"),
    ("interval-zero", "GuestProfiler(store, [module], interval=0)", "ProfilerValueError", "positive"),
    (
        "interval-negative",
        "GuestProfiler(store, [module], interval=-0.001)",
        "ProfilerValueError",
        "positive",
    ),
    ("interval-nan", "GuestProfiler(store, [module], interval=math.nan)", "ProfilerValueError", "finite"),
    ("interval-inf", "GuestProfiler(store, [module], interval=math.inf)", "ProfilerValueError", "finite"),
    ("interval-below-1us", "GuestProfiler(store, [module], interval=5e-7)", "ProfilerValueError", "at least"),
    (
        "interval-huge-int",
        "GuestProfiler(store, [module], interval=10**400)",
        "ProfilerValueError",
        "at most",
    ),
    (
        "interval-str",
        "GuestProfiler(store, [module], interval='1ms')",
        "ProfilerTypeError",
        "number of seconds",
    ),
    (
        "interval-bool",
        "GuestProfiler(store, [module], interval=True)",
        "ProfilerTypeError",
        "number of seconds",
    ),
    ("interval-positional", "GuestProfiler(store, [module], 0.001)", "TypeError", "positional"),
    (
        "start-twice",
        "p = GuestProfiler(store, [module]); p.start(); p.start()",
        "ProfilerStateError",
        "already running",
    ),
    (
        "finish-twice",
        "p = GuestProfiler(store, [module]); p.finish(); p.finish()",
        "ProfilerStateError",
        "finished",
    ),
    (
        "start-after-finish",
        "p = GuestProfiler(store, [module]); p.finish(); p.start()",
        "ProfilerStateError",
        "finished",
    ),
    (
        "save-after-finish",
        "p = GuestProfiler(store, [module]); p.finish(); p.save('x.json')",
        "ProfilerStateError",
        "finished",
    ),
    (
        "second-profiler-on-store",
        "p = GuestProfiler(store, [module]); GuestProfiler(store, [module])",
        "ProfilerStateError",
        "already has an unfinished GuestProfiler",
    ),
    (
        "start-after-store-closed",
        "p = GuestProfiler(store, [module]); store.close(); p.start()",
        "ProfilerStateError",
        "lost its store",
    ),
    ("interrupt-after-finish", "p = GuestProfiler(store, [module]); p.finish(); p.interrupt()", "ProfilerStateError",
     "finished"),
    ("timeout-negative", "GuestProfiler(store, [module], timeout=-1)", "ProfilerValueError", "positive"),
    ("timeout-nan", "GuestProfiler(store, [module], timeout=math.nan)", "ProfilerValueError", "finite"),
    ("timeout-str", "GuestProfiler(store, [module], timeout='5s')", "ProfilerTypeError", "number of seconds"),
    ("debug-info-unknown-module", "GuestProfiler(store, [('app', module)], debug_info={'other': b''})",
     "ProfilerValueError", "not profiled"),
    ("debug-info-missing-file", "GuestProfiler(store, [('app', module)], debug_info={'app': '/nonexistent.wasm'})",
     "ProfilerValueError", "cannot read the .wasm file"),
    ("debug-info-not-bytes", "GuestProfiler(store, [('app', module)], debug_info={'app': 3})", "ProfilerTypeError",
     "must be the module's .wasm bytes or path"),
    ("debug-info-list", "GuestProfiler(store, [module], debug_info=['app.wasm'])", "ProfilerTypeError",
     "debug_info must be a mapping"),
    ("continuous-nothing-rotates", "wasmtime_gp.ContinuousProfiler(store, [module], sink=print, period=None)",
     "ProfilerValueError", "nothing would rotate"),
    ("continuous-period-negative", "wasmtime_gp.ContinuousProfiler(store, [module], sink=print, period=-1)",
     "ProfilerValueError", "positive"),
    ("continuous-max-samples-zero", "wasmtime_gp.ContinuousProfiler(store, [module], sink=print, max_samples=0)",
     "ProfilerValueError", "at least 1"),
    ("continuous-keep-with-callable", "wasmtime_gp.ContinuousProfiler(store, [module], sink=print, keep=3)",
     "ProfilerValueError", "keep applies to a directory sink"),
    ("continuous-sink-int", "wasmtime_gp.ContinuousProfiler(store, [module], sink=5)", "ProfilerTypeError",
     "sink must be a callable or a directory"),
    ("continuous-sink-missing-dir", "wasmtime_gp.ContinuousProfiler(store, [module], sink='/nonexistent/dir')",
     "ProfilerValueError", "is not a directory"),
    ("continuous-label-surrogate",
     "wasmtime_gp.ContinuousProfiler(store, [module], sink=print, labels={'tenant': '\\udc80'})",
     "ProfilerValueError", "not valid Unicode"),
    ("host-func-name-surrogate",
     "wasmtime_gp.host_calls.func(store, wasmtime.FuncType([], []), print, name='\\udc80')",
     "ProfilerValueError", "not valid Unicode"),
    ("host-func-not-callable", "wasmtime_gp.host_calls.func(store, wasmtime.FuncType([], []), 3)",
     "ProfilerTypeError", "function must be callable"),
    ("host-instrument-not-linker", "wasmtime_gp.host_calls.instrument(store)", "ProfilerTypeError",
     "linker must be a wasmtime.Linker"),
    ("profile-not-json", "wasmtime_gp.Profile.from_bytes(b'not json')", "ProfileFormatError", "is not JSON"),
    ("profile-not-a-profile", "wasmtime_gp.Profile.from_bytes(b'{}')", "ProfileFormatError",
     "is not a Wasmtime guest profile"),
    ("profile-nesting-too-deep", "wasmtime_gp.Profile.from_bytes(b'[' * 100000)", "ProfileFormatError",
     "is not JSON"),
    ("profile-missing-file", "wasmtime_gp.Profile.load('/nonexistent.json')", "FileNotFoundError",
     "No such file"),
]  # fmt: skip


def raised(statements: str, error: str) -> tuple[str, str]:
    """Run a case in a fresh interpreter; return (exception class name, message) after checking the class."""
    code = (
        SETUP
        + f"""
try:
{chr(10).join("    " + line for line in statements.splitlines())}
except Exception as exc:
    expected = getattr(wasmtime_gp, {error!r}, None) or getattr(__builtins__, {error!r})
    assert isinstance(exc, expected), type(exc)
    assert isinstance(exc, wasmtime_gp.GuestProfilerError) or {error!r} in ("TypeError", "FileNotFoundError")
    print("RAISED", type(exc).__name__)
    print(str(exc).splitlines()[0] if str(exc) else "")
else:
    print("NOTHING RAISED")
"""
    )
    result = run_isolated(code)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "RAISED" in result.stdout, result.stdout
    name, message = result.stdout.split("\n", 2)[:2]
    return name.split()[1], message


def needs_engine_argument(statements: str) -> bool:
    return "make_engine(), NAMED" in statements and _abi.WASMTIME_MAJOR < _abi.ENGINE_FIRST_MAJOR


@pytest.mark.parametrize(
    ("statements", "error", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_raises_a_clear_error(statements, error, fragment):
    if needs_engine_argument(statements):
        pytest.skip("before Wasmtime 40 the profiler takes no engine: nothing to check or abort")
    _, message = raised(statements, error)
    assert fragment in message, message


def test_docs_errors_md_lists_every_case():
    """docs/errors.md is generated from CASES (tests/make_errors_doc.py): it must list them all, as they are."""
    rows = errors_doc.read_rows(errors_doc.DOC.read_text())
    assert [(row.case, row.call, row.error) for row in rows] == [
        (c[0], c[1].replace("\n", "; "), c[2]) for c in CASES
    ]
    for row, case in zip(rows, CASES):
        assert case[3] in row.message, (row.case, row.message)
