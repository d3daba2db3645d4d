"""The pytest plugin (pytest_wasmtime_gp), run by pytester in fresh pytest processes."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from guests import CHAIN

pytest_plugins = ["pytester"]
# Each runs pytest in a subprocess, and none depends on the Python or Wasmtime version.
pytestmark = pytest.mark.slow

# Test files for the inner pytest runs: a CHAIN guest, profiled through the fixture.
PRELUDE = f'''
import pytest, wasmtime

CHAIN = """{CHAIN}"""

def guest():
    config = wasmtime.Config()
    config.epoch_interruption = True
    engine = wasmtime.Engine(config)
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(1 << 40)
    module = wasmtime.Module(engine, CHAIN)
    run = wasmtime.Instance(store, module, []).exports(store)["run"]
    return store, module, lambda n: run(store, n)
'''

PROFILED_TESTS = """
import time

@pytest.mark.parametrize("size", ["small", "a/b c"])
def test_chain(wasm_profiler, size):
    store, module, run = guest()
    with wasm_profiler(store, [module]) as profiler:
        # Until there are samples: on a loaded machine the ticker may get no CPU during one short run.
        deadline = time.monotonic() + 30
        while profiler.sample_count < 5 and time.monotonic() < deadline:
            run(30_000_000)
    assert profiler.profile().top(1)[0].frame.function == "inner"
"""


def write_tests(pytester: pytest.Pytester, body: str) -> None:
    pytester.makepyfile(test_guest=PRELUDE + textwrap.dedent(body))


def test_off_it_changes_nothing_and_loads_no_extension(pytester):
    write_tests(
        pytester,
        """
        import sys

        def test_untouched():
            assert "wasmtime_gp" not in sys.modules
            assert "wasmtime_gp._core" not in sys.modules
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "wasm guest profiles" not in result.stdout.str()
    assert not (pytester.path / ".wasm-profiles").exists()


def test_off_the_fixture_keeps_the_profile_in_memory(pytester):
    write_tests(pytester, PROFILED_TESTS)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=2)
    assert not (pytester.path / ".wasm-profiles").exists()
    assert "wasm guest profiles" not in result.stdout.str()


def _profiles_in(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.json"))


def test_on_each_profiled_test_writes_its_profile_and_the_summary_lists_them(pytester):
    write_tests(pytester, PROFILED_TESTS)
    result = pytester.runpytest_subprocess("--wasm-profile=out")
    result.assert_outcomes(passed=2)
    files = _profiles_in(pytester.path / "out")
    assert len(files) == 2
    # Names from the test ids, safe for a file system, distinct even though "a/b c" needed escaping.
    assert all(f.name.startswith("test_guest.py_test_chain_") for f in files)
    for path in files:
        raw = json.loads(path.read_text())
        assert raw["threads"][0]["samples"]["length"] > 0
    out = result.stdout.str()
    assert "wasm guest profiles (wasmtime-gp)" in out
    assert "2 tests profiled; 2 profiles in out" in out
    assert "test_guest.py::test_chain[a/b c]" in out and "inner" in out
    assert str(files[0].relative_to(pytester.path)) in out


def test_the_ini_key_turns_it_on(pytester):
    pytester.makeini("[pytest]\nwasm_profile = from-ini\n")
    write_tests(pytester, PROFILED_TESTS)
    pytester.runpytest_subprocess().assert_outcomes(passed=2)
    assert len(_profiles_in(pytester.path / "from-ini")) == 2


def test_the_fixture_forwards_every_profiler_keyword(pytester):
    write_tests(
        pytester,
        """
        from wasmtime_gp import ProfilerValueError

        def test_debug_info_reaches_the_profiler(wasm_profiler):
            store, module, run = guest()
            with pytest.raises(ProfilerValueError, match="debug_info names module 'elsewhere'"):
                with wasm_profiler(store, [module], debug_info={"elsewhere": b"\\0asm"}):
                    pass

        def test_an_unknown_keyword_is_refused(wasm_profiler):
            store, module, run = guest()
            with pytest.raises(TypeError, match="colour"):
                with wasm_profiler(store, [module], colour="red"):
                    pass
        """,
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=2)


def test_the_interval_marker_sets_the_fixtures_interval(pytester):
    write_tests(
        pytester,
        """
        @pytest.mark.wasm_profile(interval=0.0005)
        def test_marked(wasm_profiler):
            store, module, run = guest()
            with wasm_profiler(store, [module]) as profiler:
                run(1000)
            assert profiler.interval == 0.0005

        def test_unmarked(wasm_profiler):
            store, module, run = guest()
            with wasm_profiler(store, [module]) as profiler:
                run(1000)
            assert profiler.interval == 0.001
        """,
    )
    pytester.runpytest_subprocess("--strict-markers").assert_outcomes(passed=2)


def test_the_budget_marker_fails_a_test_over_budget_with_the_top_functions(pytester):
    write_tests(
        pytester,
        """
        @pytest.mark.wasm_budget("inner", max_percent=50)
        def test_over(wasm_profiler):
            store, module, run = guest()
            with wasm_profiler(store, [module]):
                run(30_000_000)

        @pytest.mark.wasm_budget("inner", max_percent=100)
        def test_within(wasm_profiler):
            store, module, run = guest()
            with wasm_profiler(store, [module]):
                run(30_000_000)

        @pytest.mark.wasm_budget("middle", max_percent=1, by="self")
        def test_self_share(wasm_profiler):
            store, module, run = guest()
            with wasm_profiler(store, [module]):
                run(30_000_000)

        @pytest.mark.wasm_budget("inner", max_percent=50)
        def test_no_profile():
            pass
        """,
    )
    result = pytester.runpytest_subprocess("--strict-markers")
    result.assert_outcomes(passed=2, failed=2)
    out = result.stdout.str()
    assert "wasm_budget: inner took" in out and "over its budget of 50 %" in out
    assert "top functions:" in out and "inner [chain]" in out
    assert "wasm_budget: the test took no profile" in out


def test_xdist_workers_write_every_profile_and_the_controller_summarises(pytester):
    pytest.importorskip("xdist")
    write_tests(pytester, PROFILED_TESTS + PROFILED_TESTS.replace("test_chain", "test_again"))
    result = pytester.runpytest_subprocess("-n", "2", "--wasm-profile=out")
    result.assert_outcomes(passed=4)
    assert len(_profiles_in(pytester.path / "out")) == 4
    assert "4 tests profiled; 4 profiles in out" in result.stdout.str()


# The regression gate on tests/gate_suite.py (benchmarks/gate.py measures its false alarms and detections).
GATE_SUITE = (Path(__file__).parent / "gate_suite.py").read_text()


def _gate(pytester: pytest.Pytester, *options: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--wasm-profile-baseline=base", "--wasm-profile-baseline-runs=2", *options
    )


def _baseline_files(pytester: pytest.Pytester) -> dict[str, list[str]]:
    """Each test's name -> the files in its baseline directory."""
    return {
        directory.name.split("_test_")[-1].rsplit("-", 1)[0]: sorted(
            path.name for path in directory.iterdir()
        )
        for directory in (pytester.path / "base").iterdir()
    }


def test_the_gate_stores_runs_passes_the_same_code_and_fails_a_function_made_slower(
    pytester, monkeypatch, capsys
):
    pytester.makepyfile(test_gate_suite=GATE_SUITE)
    monkeypatch.setenv("GATE_SLOWDOWN", "0")
    monkeypatch.delenv("GATE_MINIGZIP", raising=False)
    for _ in range(2):
        result = _gate(pytester)
        result.assert_outcomes(passed=2, skipped=1)
        assert "baselines in base: 2 stored" in result.stdout.str()
    assert _baseline_files(pytester) == {"pipeline": ["1.json", "2.json"], "example": ["1.json", "2.json"]}
    result = _gate(pytester)
    result.assert_outcomes(passed=2, skipped=1)
    assert "baselines in base: 1 passed, 1 not gated" in result.stdout.str()

    # render 20 % slower, nothing else: caught, also under xdist (the workers' verdicts reach the summary).
    monkeypatch.setenv("GATE_SLOWDOWN", "0.2")
    result = _gate(pytester, "-n", "2")
    result.assert_outcomes(passed=1, failed=1, skipped=1)
    out = result.stdout.str()
    assert "FAILED test_gate_suite.py::test_pipeline" in out
    assert "wasm_baseline: 1 function(s) grew against the rest of the test by more than 10 % beyond" in out, (
        out
    )
    assert "  render [pipeline]: +" in out
    assert "baselines in base: 1 regressed, 1 not gated" in out
    files = _baseline_files(pytester)
    assert files == {"pipeline": ["1.json", "2.json", "new.json"], "example": ["1.json", "2.json"]}
    # The command the failure suggests works on what it names.
    command = next(line for line in out.splitlines() if "see it: wasmtime-gp diff" in line).split("see it: ")[
        1
    ]
    pipeline = next((pytester.path / "base").glob("*pipeline*"))
    assert command.split()[2:4] == [
        str(Path("base") / pipeline.name / "1.json"),
        str(Path("base") / pipeline.name / "new.json"),
    ]
    from wasmtime_gp.cli import main

    assert (
        main(
            [
                "diff",
                str(pipeline / "1.json"),
                str(pipeline / "new.json"),
                "--html",
                str(pytester.path / "d.html"),
            ]
        )
        == 0
    )
    assert "render" in capsys.readouterr().out and (pytester.path / "d.html").is_file()

    # Meant: the baseline starts anew from this code (one run, then the next adds the second).
    result = _gate(pytester, "--wasm-profile-baseline-update")
    result.assert_outcomes(passed=2, skipped=1)
    assert _baseline_files(pytester) == {"pipeline": ["1.json"], "example": ["1.json"]}


def test_the_gate_checks_its_settings_and_its_files(pytester):
    write_tests(
        pytester,
        """
        @pytest.mark.wasm_baseline(max_growth=None)
        def test_not_gated(wasm_profiler):
            store, module, run = guest()
            with wasm_profiler(store, [module]):
                run(1_000_000)

        @pytest.mark.wasm_baseline(max_growth=-5)
        def test_bad_growth(wasm_profiler):
            store, module, run = guest()
            with wasm_profiler(store, [module]):
                run(1_000_000)

        @pytest.mark.wasm_baseline(growth=5)
        def test_unknown_keyword(wasm_profiler):
            store, module, run = guest()
            with wasm_profiler(store, [module]):
                run(1_000_000)

        def test_corrupt_baseline(wasm_profiler):
            store, module, run = guest()
            with wasm_profiler(store, [module]):
                run(1_000_000)

        def test_finished_by_the_test(wasm_profiler):
            store, module, run = guest()
            with wasm_profiler(store, [module]) as profiler:
                run(1_000_000)
            assert profiler.finish()  # the test's own: the gate reads the same bytes
        """,
    )
    result = pytester.runpytest_subprocess("--wasm-profile-baseline-update")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--wasm-profile-baseline-update needs --wasm-profile-baseline" in result.stderr.str()
    result = pytester.runpytest_subprocess("--wasm-profile-baseline", "--wasm-profile-baseline-runs=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--wasm-profile-baseline-runs must be 1 or more" in result.stderr.str()

    options = ("--strict-markers", "--wasm-profile-baseline=base", "--wasm-profile-baseline-runs=1")
    result = pytester.runpytest_subprocess(*options)
    out = result.stdout.str()
    result.assert_outcomes(passed=3, failed=2)
    assert "baselines in base: 3 stored" in out
    assert "wasm_baseline: max_growth must be a percentage of 0 or more, or None, not -5" in out
    assert "wasm_baseline: unknown keywords ['growth']" in out
    corrupt = next((pytester.path / "base").glob("*corrupt*")) / "1.json"
    corrupt.write_text("{ not a profile")
    result = pytester.runpytest_subprocess(*options, "-k", "not_gated or corrupt or finished")
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    assert "wasm_baseline: cannot read the baseline:" in out and "is not JSON" in out
    assert "baselines in base: 1 passed, 1 not gated" in out
