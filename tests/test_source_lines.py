"""Source lines from DWARF: a real C program compiled with clang-14 -g, profiled, symbolised."""

from __future__ import annotations

import gzip
import json
import subprocess
import warnings
from pathlib import Path

import pytest
import tools
import wasmtime
from conftest import make_engine

from wasmtime_gp import GuestProfiler, Profile, ProfilerTypeError, ProfilerValueError
from wasmtime_gp._abi import WASMTIME_MAJOR
from wasmtime_gp._symbols import lines as _source_lines
from wasmtime_gp.cli import main
from wasmtime_gp.exports import to_collapsed, to_speedscope
from wasmtime_gp.exports.pprof import _profile_class, to_pprof

SOURCE = Path(__file__).parent / "programs" / "hot_lines.c"
LINE = {
    marker: number
    for number, text in enumerate(SOURCE.read_text().splitlines(), 1)
    for marker in ("HOT-LOOP", "COLD-LOOP", "INLINED-LOOP", "INLINE-CALL", "MAIN-CALL")
    if f"/* {marker} */" in text
}
ITERATIONS = "150000000"


def compile_c(tmp: Path, name: str, *flags: str) -> Path:
    clang = tools.program("clang-14")
    out = tmp / f"{name}.wasm"
    subprocess.run([clang, "--target=wasm32-wasi", "--sysroot=/usr", "-O2", *flags, "-o", str(out), str(SOURCE)],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    return out


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("lines")
    return {
        "debug": compile_c(tmp, "hot_lines", "-g"),
        "plain": compile_c(tmp, "hot_lines_nodebug"),
        "stripped": compile_c(tmp, "hot_lines_stripped", "-g", "-Wl,--strip-debug"),
    }


def profile_program(wasm: Path, with_debug_info: bool = True) -> GuestProfiler:
    """Run the program under a profiler, handing it the .wasm file (keyed by the Module) for its DWARF."""
    engine = make_engine()
    module = wasmtime.Module.from_file(engine, str(wasm))
    store = wasmtime.Store(engine)
    config = wasmtime.WasiConfig()
    config.argv = ["hot_lines", ITERATIONS]
    store.set_wasi(config)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    start = linker.instantiate(store, module).exports(store)["_start"]
    assert isinstance(start, wasmtime.Func)
    info = {module: wasm} if with_debug_info else None
    profiler = GuestProfiler(store, [("hot_lines", module)], interval=0.0005, debug_info=info)
    with profiler:
        try:
            start(store)
        except wasmtime.ExitTrap as exit_trap:
            assert exit_trap.code == 0
    return profiler


@pytest.fixture(scope="module")
def symbolised(programs: dict[str, Path]) -> tuple[Profile, dict[str, object]]:
    profiler = profile_program(programs["debug"])
    data = profiler.finish()
    return Profile.from_bytes(data), json.loads(data)


def test_the_hottest_line_is_the_hot_loop(symbolised):
    profile, _ = symbolised
    top = profile.top_lines(3)
    assert (Path(top[0].file).name, top[0].line, top[0].function) == ("hot_lines.c", LINE["HOT-LOOP"], "hot")
    assert {(row.function, row.line) for row in top} == {
        ("hot", LINE["HOT-LOOP"]),
        ("scramble", LINE["INLINED-LOOP"]),
        ("cold", LINE["COLD-LOOP"]),
    }
    assert top[0].file == str(SOURCE)  # the absolute path clang recorded: the file is readable here


def test_callers_carry_their_call_sites_and_inlined_functions_appear(symbolised):
    profile, _ = symbolised
    stacks = {tuple((f.function, f.line, f.inlined) for f in s.stack[-3:]) for s in profile.samples}
    assert (("main", LINE["MAIN-CALL"], False), ("hot", LINE["INLINE-CALL"], False),
            ("scramble", LINE["INLINED-LOOP"], True)) in stacks  # fmt: skip
    assert any(
        stack[-2:] == (("main", LINE["MAIN-CALL"], False), ("hot", LINE["HOT-LOOP"], False))
        for stack in stacks
    )
    hot = next(f for s in profile.samples for f in s.stack if f.function == "hot")
    assert (
        hot.function_line == LINE["HOT-LOOP"] - 2
    )  # `unsigned hot(...)` is declared two lines above its loop


def test_the_firefox_profile_holds_lines_files_and_inline_frames(symbolised):
    _, raw = symbolised
    thread = raw["threads"][0]
    strings = thread["stringArray"] if "stringArray" in thread else raw["shared"]["stringArray"]
    frames, funcs = thread["frameTable"], thread["funcTable"]
    named = {strings[funcs["name"][f]]: f for f in range(funcs["length"])}
    assert strings[funcs["fileName"][named["hot"]]] == str(SOURCE)
    hot_lines = {line for func, line in zip(frames["func"], frames["line"]) if func == named["hot"]}
    assert {LINE["HOT-LOOP"], LINE["INLINE-CALL"]} <= hot_lines
    inlined = [i for i in range(frames["length"]) if frames["func"][i] == named["scramble"]]
    assert inlined and all(frames["inlineDepth"][i] == 1 for i in inlined)


def test_lines_flow_into_the_exports(symbolised):
    profile, _ = symbolised
    assert f"hot:{LINE['HOT-LOOP']} " in to_collapsed(profile, lines=True)
    assert f"hot:{LINE['HOT-LOOP']}" not in to_collapsed(profile)
    frames = json.loads(to_speedscope(profile))["shared"]["frames"]
    assert {"name": "hot", "file": str(SOURCE), "line": LINE["HOT-LOOP"] - 2} in frames
    message = _profile_class()()
    message.ParseFromString(gzip.decompress(to_pprof(profile)))
    strings = message.string_table
    functions = {f.id: (strings[f.name], strings[f.filename]) for f in message.function}
    located = {(functions[line.function_id], line.line) for loc in message.location for line in loc.line}
    assert (("hot", str(SOURCE)), LINE["HOT-LOOP"]) in located
    assert (("scramble", str(SOURCE)), LINE["INLINED-LOOP"]) in located


def test_report_lines_shows_the_source_text(symbolised, tmp_path, capsys):
    _, raw = symbolised
    path = tmp_path / "p.json"
    path.write_text(json.dumps(raw))
    assert main(["report", str(path), "--lines", "3"]) == 0
    out = capsys.readouterr().out
    assert f"hot_lines.c:{LINE['HOT-LOOP']}  hot" in out
    assert "| for (unsigned long i = 0; i < n; i++) { /* HOT-LOOP */" in out
    assert main(["convert", str(path), "--to", "collapsed", "--lines", "-o", str(tmp_path / "c.txt")]) == 0
    assert f"hot:{LINE['HOT-LOOP']} " in (tmp_path / "c.txt").read_text()


def test_a_cpp_guest_names_its_template_member_and_line(tmp_path, capsys):
    source = SOURCE.with_name("accumulate.cc")
    loop = next(n for n, text in enumerate(source.read_text().splitlines(), 1) if "/* CPP-LOOP */" in text)
    wasm = tmp_path / "accumulate.wasm"
    clang = tools.program("clang++-14")
    subprocess.run([clang, "--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-g", "-fno-exceptions", "-nostdlib++",
                    "-o", str(wasm), str(source)], check=True, capture_output=True, timeout=300)  # fmt: skip
    assert main(["run", str(wasm), "-o", str(tmp_path / "p.json"), "--", "50000000"]) == 0
    top = Profile.load(tmp_path / "p.json").top_lines(1)[0]
    assert (top.function, top.file, top.line) == (
        "geometry::Accumulator<double>::add_squares(unsigned long)",
        str(source),
        loop,
    )


def test_the_cli_run_symbolises_a_debug_build(programs, tmp_path, capsys):
    output = tmp_path / "run.json"
    assert (
        main(["run", str(programs["debug"]), "--interval", "500us", "-o", str(output), "--", ITERATIONS]) == 0
    )
    err = capsys.readouterr().err
    assert f"hot_lines.c:{LINE['HOT-LOOP']}  hot" in err
    assert Profile.load(output).top_lines(1)[0].line == LINE["HOT-LOOP"]


def test_a_module_without_dwarf_stays_function_level_with_one_notice(programs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        profiler = profile_program(programs["stripped"])
        profile = profiler.profile()
    notices = [str(w.message) for w in caught if "source lines" in str(w.message)]
    expected = (
        "wasmtime-gp: no source lines for module 'hot_lines': it has no DWARF (compile with -g, "
        "and do not strip it); its frames stay function-level"
    )
    assert notices == [expected]
    assert not profile.has_lines and profile.top(1)[0].frame.function == "hot"


def test_the_wasm_of_another_program_is_refused_with_a_notice(programs, tmp_path):
    other = tmp_path / "other.c"
    other.write_text("int main(void) { return 0; }\n")
    clang = tools.program("clang-14")
    subprocess.run([clang, "--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-g", "-o", str(tmp_path / "other.wasm"),
                    str(other)], check=True, capture_output=True, timeout=300)  # fmt: skip
    engine = make_engine()
    module = wasmtime.Module.from_file(engine, str(programs["debug"]))
    store = wasmtime.Store(engine)
    profiler = GuestProfiler(
        store, [("hot_lines", module)], debug_info={"hot_lines": tmp_path / "other.wasm"}
    )
    with pytest.warns(RuntimeWarning, match="is not the one this module was compiled from"):
        profile = profiler.profile()
    assert not profile.has_lines


def test_code_built_without_g_gets_no_line_and_never_a_wrong_one(programs):
    # wasi-libc's objects carry DWARF, so the module has some: their frames get lines, ours none.
    profile = profile_program(programs["plain"]).profile()
    ours = [f for s in profile.samples for f in s.stack if f.function in ("hot", "cold", "main")]
    assert ours and all(f.line is None and f.file is None for f in ours)
    assert profile.top(1)[0].frame.function == "hot"


def test_an_unverified_wasmtime_gets_a_notice_not_lines(programs):
    engine = make_engine()
    module = wasmtime.Module.from_file(engine, str(programs["debug"]))
    with pytest.warns(RuntimeWarning, match="the address map of Wasmtime 99 has not been verified"):
        info = _source_lines.DebugInfo({"m": module}, {"m": programs["debug"]}, 99)
    assert not info and info.modules() == {}
    assert WASMTIME_MAJOR in range(19, 51)


def test_corrupt_dwarf_is_a_notice_never_a_crash(programs):
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    from wasmtime_gp._symbols.artifact import MalformedArtifact
    from wasmtime_gp._symbols.dwarf import ModuleDwarf, wasm_sections

    wasm = programs["debug"].read_bytes()
    _, custom = wasm_sections(wasm)
    spans = [
        (wasm.find(custom[name]), len(custom[name]))
        for name in (".debug_info", ".debug_line", ".debug_abbrev")
    ]
    tried = 0

    @hypothesis.settings(max_examples=60, deadline=None)
    @hypothesis.given(span=st.sampled_from(spans), data=st.data())
    def corrupt(span, data):  # type: ignore[no-untyped-def]
        nonlocal tried
        start, length = span
        offset = data.draw(st.integers(0, length - 1))
        junk = data.draw(st.binary(min_size=1, max_size=16))
        damaged = wasm[: start + offset] + junk + wasm[start + offset + len(junk) :]
        tried += 1
        try:
            dwarf = ModuleDwarf(damaged)
        except (MalformedArtifact, LookupError):
            return
        for offset in range(0, 4096, 97):
            dwarf.frames(offset)

    corrupt()
    assert tried >= 60


def test_debug_info_arguments_are_checked(programs):
    engine = make_engine()
    store = wasmtime.Store(engine)
    module = wasmtime.Module.from_file(engine, str(programs["debug"]))
    with pytest.raises(ProfilerValueError, match="which is not profiled"):
        GuestProfiler(store, [("app", module)], debug_info={"other": programs["debug"]})
    with pytest.raises(ProfilerValueError, match="cannot read the .wasm file"):
        GuestProfiler(
            store, [("app", module)], debug_info={"app": programs["debug"].with_name("missing.wasm")}
        )
    with pytest.raises(ProfilerTypeError):
        GuestProfiler(store, [("app", module)], debug_info={"app": 42})  # type: ignore[dict-item]
    with pytest.raises(ProfilerTypeError):
        GuestProfiler(store, [("app", module)], debug_info=["app.wasm"])  # type: ignore[arg-type]
