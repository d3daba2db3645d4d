"""Source lines from DWARF: a real C program compiled with clang-14 -g, profiled, symbolised."""

from __future__ import annotations

import bisect
import copy
import gzip
import json
import posixpath
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import tools
import wasmtime
from conftest import make_engine
from elftools.dwarf.dwarfinfo import DWARFInfo

from wasmtime_gp import GuestProfiler, Profile, ProfilerTypeError, ProfilerValueError
from wasmtime_gp._abi import WASMTIME_MAJOR
from wasmtime_gp._symbols import lines as _source_lines
from wasmtime_gp._symbols.artifact import MalformedArtifact
from wasmtime_gp._symbols.dwarf import (
    ModuleDwarf,
    SourceFrame,
    SourceLine,
    _dwarf_info,
    dwarf_sections,
    wasm_sections,
)
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
            for offset in range(0, 4096, 97):
                dwarf.frames(offset)  # decodes what the offset needs: malformed there, it says so
        except (MalformedArtifact, LookupError):
            return

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


# Lazy decoding against a full reading: the reading this package did before (pyelftools, every unit).


@pytest.fixture(scope="module")
def dwarf_programs(
    programs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, str]]:
    """The C and C++ programs with clang's DWARF 4 (its default) and DWARF 5 (other forms, tables and lists)."""
    tmp = tmp_path_factory.mktemp("dwarf")
    cpp = SOURCE.with_name("accumulate.cc")
    clang = tools.program("clang++-14")
    built = {
        "c": (programs["debug"], "30000000"),
        "c-dwarf5": (compile_c(tmp, "hot_lines5", "-gdwarf-5"), "30000000"),
    }
    for name, flag in (("c++", "-g"), ("c++-dwarf5", "-gdwarf-5")):
        out = tmp / f"{name}.wasm"
        subprocess.run([clang, "--target=wasm32-wasi", "--sysroot=/usr", "-O2", flag, "-fno-exceptions", "-nostdlib++",
                        "-o", str(out), str(cpp)], check=True, capture_output=True, timeout=300)  # fmt: skip
        built[name] = (out, "20000000")
    return built


def raw_profile(wasm: Path, argument: str) -> tuple[dict[str, Any], bytes]:
    """A profile of the program without source lines, and the artifact its module was compiled into."""
    engine = make_engine()
    module = wasmtime.Module.from_file(engine, str(wasm))
    store = wasmtime.Store(engine)
    config = wasmtime.WasiConfig()
    config.argv = ["program", argument]
    store.set_wasi(config)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    start = linker.instantiate(store, module).exports(store)["_start"]
    assert isinstance(start, wasmtime.Func)
    profiler = GuestProfiler(store, [("program", module)], interval=0.0005)
    with profiler:
        try:
            start(store)
        except wasmtime.ExitTrap as exit_trap:
            assert exit_trap.code == 0
    return json.loads(profiler.finish()), bytes(module.serialize())


@pytest.mark.parametrize("program", ["c", "c-dwarf5", "c++", "c++-dwarf5"])
def test_lazy_decoding_reads_what_a_full_reading_reads(dwarf_programs, program):
    wasm_path, argument = dwarf_programs[program]
    wasm = wasm_path.read_bytes()
    full, lazy = FullReading(wasm), ModuleDwarf(wasm)
    # Every offset where a row, a function or an inlined call starts or ends, and either side of it.
    edges = {a for a, _ in full._rows} | {x for f in full._functions for x in f[:2]}
    edges |= {x for inline in full._inlines for x in inline[:2]}
    offsets = sorted({x + d for x in edges for d in (-1, 0, 1)} & set(range(len(lazy.code))))
    assert len(offsets) > 1000
    assert [lazy.frames(offset) for offset in offsets] == [full.frames(offset) for offset in offsets]
    assert any(len(full.frames(offset)) > 1 for offset in offsets)  # inlined calls were compared
    # Every unit's files, as its line program header's tables (read by hand) name them.
    assert [lazy._unit_files(unit) for unit in range(len(full.files))] == full.files

    raw, artifact = raw_profile(wasm_path, argument)
    symbolised = {}
    for name, dwarf in (("full", full), ("lazy", ModuleDwarf(wasm))):
        profile = copy.deepcopy(raw)
        lines = _source_lines.ModuleLines(artifact, dwarf, WASMTIME_MAJOR)  # type: ignore[arg-type]
        assert _source_lines.add_source_lines(profile, {"program": lines}) > 0
        symbolised[name] = profile
    assert (
        symbolised["lazy"] == symbolised["full"]
    )  # every frame, function, file, line, column and inline frame


class _ReferenceInline(NamedTuple):
    low: int
    high: int
    depth: int
    function: str
    call: SourceLine  # where it was inlined: the line of its caller
    declared: SourceLine | None


class FullReading:
    """The reading this package did until it decoded lazily: every unit with pyelftools, into one table."""

    def __init__(self, wasm: bytes) -> None:
        self.code, custom = dwarf_sections(wasm)
        self.code_start = self.code.start
        try:
            info = _dwarf_info(custom)  # pyelftools over the same sections, as the package reads them
            self._rows: list[tuple[int, SourceLine | None]] = []
            self._inlines: list[_ReferenceInline] = []
            self._functions: list[tuple[int, int, SourceLine | None]] = []
            self.files: list[list[str]] = []  # per unit
            for cu in info.iter_CUs():
                files = self._read_lines(info, cu)
                self.files.append(files)
                self._read_functions(cu, files)
        except Exception as exc:  # noqa: BLE001
            raise MalformedArtifact(f"unreadable DWARF: {exc}") from None
        self._rows.sort(key=lambda row: row[0])
        self._row_addresses = [row[0] for row in self._rows]
        self._inlines.sort(key=lambda inline: (inline.low, inline.depth))
        self._inline_lows = [inline.low for inline in self._inlines]
        self._functions.sort(key=lambda function: function[0])
        self._function_lows = [function[0] for function in self._functions]

    def _read_lines(self, info: DWARFInfo, cu: Any) -> list[str]:
        program = info.line_program_for_CU(cu)
        if program is None:
            return []
        header = program.header
        directories = [_text(d) for d in header["include_directory"]]
        comp_dir = (
            _text(cu.get_top_DIE().attributes["DW_AT_comp_dir"].value)
            if "DW_AT_comp_dir" in (cu.get_top_DIE().attributes)
            else ""
        )
        version = header["version"]
        files = []
        for entry in header["file_entry"]:
            directory_index = entry.dir_index if version >= 5 else entry.dir_index - 1
            directory = directories[directory_index] if 0 <= directory_index < len(directories) else ""
            if version < 5 and entry.dir_index == 0:
                directory = comp_dir
            files.append(posixpath.normpath(posixpath.join(comp_dir, directory, _text(entry.name))))
        first_file = 0 if version >= 5 else 1
        for entry in program.get_entries():
            state = entry.state
            if state is None:
                continue
            if state.end_sequence:
                self._rows.append((state.address, None))
                continue
            index = state.file - first_file
            if 0 <= index < len(files) and state.line > 0:
                self._rows.append((state.address, SourceLine(files[index], state.line, state.column)))
        return files

    def _read_functions(self, cu: Any, files: list[str]) -> None:
        version = cu["version"]
        first_file = 0 if version >= 5 else 1

        def place(
            die: Any, file_attribute: str, line_attribute: str, column_attribute: str
        ) -> SourceLine | None:
            attributes = die.attributes
            if file_attribute not in attributes or line_attribute not in attributes:
                return None
            index = attributes[file_attribute].value - first_file
            if not 0 <= index < len(files):
                return None
            column = attributes[column_attribute].value if column_attribute in attributes else 0
            return SourceLine(files[index], attributes[line_attribute].value, column)

        def declared(die: Any) -> SourceLine | None:
            for origin in _origins(die):
                found = place(origin, "DW_AT_decl_file", "DW_AT_decl_line", "DW_AT_decl_column")
                if found is not None:
                    return found
            return None

        def walk(die: Any, depth: int) -> None:
            for child in die.iter_children():
                if child.tag == "DW_TAG_subprogram":
                    for low, high in _ranges(child, cu):
                        self._functions.append((low, high, declared(child)))
                    walk(child, 0)
                elif child.tag == "DW_TAG_inlined_subroutine":
                    call = place(child, "DW_AT_call_file", "DW_AT_call_line", "DW_AT_call_column")
                    name = _name(child)
                    if call is not None and name is not None:
                        for low, high in _ranges(child, cu):
                            self._inlines.append(
                                _ReferenceInline(low, high, depth, name, call, declared(child))
                            )
                    walk(child, depth + 1)
                elif child.tag == "DW_TAG_lexical_block":
                    walk(child, depth)

        walk(cu.get_top_DIE(), 0)

    def line(self, code_offset: int) -> SourceLine | None:
        index = bisect.bisect_right(self._row_addresses, code_offset) - 1
        return self._rows[index][1] if index >= 0 else None

    def frames(self, code_offset: int) -> list[SourceFrame]:
        """The source frames at `code_offset`, outermost first; empty where DWARF says nothing."""
        line = self.line(code_offset)
        if line is None:
            return []
        chain = self._inline_chain(code_offset)
        function_line = self._function_line(code_offset)
        if not chain:
            return [SourceFrame(None, line, function_line)]
        # Each level runs at the line where it called the next; the innermost at the line table's line.
        frames = [SourceFrame(None, chain[0].call, function_line)]
        for inline, caller_of_next in zip(chain, chain[1:]):
            frames.append(SourceFrame(inline.function, caller_of_next.call, inline.declared))
        frames.append(SourceFrame(chain[-1].function, line, chain[-1].declared))
        return frames

    def _function(self, code_offset: int) -> tuple[int, int, SourceLine | None] | None:
        index = bisect.bisect_right(self._function_lows, code_offset) - 1
        if index >= 0 and code_offset < self._functions[index][1]:
            return self._functions[index]
        return None

    def _inline_chain(self, code_offset: int) -> list[_ReferenceInline]:
        function = self._function(code_offset)
        if function is None:
            return []
        # Inlined calls lie within their function: only those starting between it and the offset can cover it.
        first = bisect.bisect_left(self._inline_lows, function[0])
        end = bisect.bisect_right(self._inline_lows, code_offset)
        covering = [inline for inline in self._inlines[first:end] if code_offset < inline.high]
        chain: list[_ReferenceInline] = []
        for inline in sorted(covering, key=lambda inline: inline.depth):
            if inline.depth == len(chain):
                chain.append(inline)
        return chain

    def _function_line(self, code_offset: int) -> SourceLine | None:
        function = self._function(code_offset)
        return function[2] if function is not None else None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _origins(die: Any) -> Iterator[Any]:
    """A DIE, then those it refers to for the rest of its description (abstract_origin, specification)."""
    for _ in range(4):  # such chains are short
        yield die
        for link in ("DW_AT_abstract_origin", "DW_AT_specification"):
            if link in die.attributes:
                die = die.get_DIE_from_attribute(link)
                break
        else:
            return


def _name(die: Any) -> str | None:
    for origin in _origins(die):
        if "DW_AT_name" in origin.attributes:
            return _text(origin.attributes["DW_AT_name"].value)
    return None


def _ranges(die: Any, cu: Any) -> list[tuple[int, int]]:
    attributes = die.attributes
    if "DW_AT_low_pc" in attributes and "DW_AT_high_pc" in attributes:
        low = attributes["DW_AT_low_pc"].value
        high = attributes["DW_AT_high_pc"]
        # DWARF 4+: a high_pc of class constant is a length.
        end = low + high.value if high.form.startswith("DW_FORM_data") else high.value
        return [(low, end)] if low > 0 or end > 0 else []
    if "DW_AT_ranges" in attributes:
        dwarf = cu.dwarfinfo
        base = cu.get_top_DIE().attributes.get("DW_AT_low_pc")
        base_address = base.value if base is not None else 0
        lists = dwarf.range_lists()
        if lists is None:
            return []
        out = []
        for entry in lists.get_range_list_at_offset(attributes["DW_AT_ranges"].value, cu=cu):
            if hasattr(entry, "begin_offset"):
                begin, finish = entry.begin_offset, entry.end_offset
                if not getattr(entry, "is_absolute", False):
                    begin, finish = begin + base_address, finish + base_address
                if finish > begin:
                    out.append((begin, finish))
            elif hasattr(entry, "base_address"):
                base_address = entry.base_address
        return out
    return []
