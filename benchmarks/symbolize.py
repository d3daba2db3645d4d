"""How long source lines take: symbolising a 100,000-sample profile of SQLite's speedtest1 built with -g.

    python benchmarks/symbolize.py            # builds speedtest1 with -g (once), profiles it, 5 timed runs
    python benchmarks/symbolize.py --samples 20000 --reps 3

The profile is taken once (without debug_info), then each run times what `finish()` adds with
`debug_info=`: indexing the DWARF and the address map, symbolising every frame (decoding the line
sequences, functions and inlined calls the frames need) and rewriting the stacks with inline frames,
and the JSON round trip. Prints min and median of each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

import wasmtime

from wasmtime_gp import GuestProfiler, Profile
from wasmtime_gp._abi import WASMTIME_MAJOR
from wasmtime_gp._symbols import lines as _source_lines

HERE = Path(__file__).resolve().parent
PROGRAMS = HERE / "build" / "programs"
ARGV = ["speedtest1", "--memdb", "--size", "40"]


def build_debug_speedtest1() -> Path:
    out = PROGRAMS / "speedtest1-g.wasm"
    if out.exists():
        return out
    if not (PROGRAMS / "speedtest1.wasm").exists():
        subprocess.run(["bash", str(HERE / "programs" / "build.sh"), str(PROGRAMS)], check=True)
    (sqlite,) = (PROGRAMS / "src").glob("sqlite3-*/")
    # The flags of build.sh, with -g.
    subprocess.run(
        ["clang-14", "--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-g", "-DSQLITE_OS_OTHER=1",
         "-DSQLITE_THREADSAFE=0", "-DSQLITE_TEMP_STORE=3", "-DSQLITE_OMIT_LOAD_EXTENSION",
         "-D_WASI_EMULATED_PROCESS_CLOCKS", "-I.", "-o", str(out), "test/speedtest1.c", "sqlite3.c",
         str(HERE / "programs" / "sqlite_memory_vfs.c"), "-lwasi-emulated-process-clocks"],
        cwd=sqlite, check=True, capture_output=True,
    )  # fmt: skip
    return out


def profile(wasm: Path, samples: int) -> tuple[bytes, wasmtime.Module]:
    config = wasmtime.Config()
    config.epoch_interruption = True
    engine = wasmtime.Engine(config)
    module = wasmtime.Module.from_file(engine, str(wasm))
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    profiler = GuestProfiler(store, [("speedtest1", module)], interval=50e-6)
    with profiler:
        while profiler.sample_count < samples:  # one WASI run per instance, all on this store
            wasi = wasmtime.WasiConfig()
            wasi.argv = ARGV
            store.set_wasi(wasi)
            start = linker.instantiate(store, module).exports(store)["_start"]
            assert isinstance(start, wasmtime.Func)
            try:
                start(store)
            except wasmtime.ExitTrap:
                pass
    return profiler.finish(), module


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()

    wasm = build_debug_speedtest1()
    data, module = profile(wasm, args.samples)
    raw = json.loads(data)
    thread = raw["threads"][0]
    print(f"speedtest1 -g: {wasm.stat().st_size / 1e6:.1f} MB, "
          f"{thread['samples']['length']:,} samples, {thread['frameTable']['length']:,} distinct frames, "
          f"{thread['funcTable']['length']:,} functions sampled; Wasmtime {WASMTIME_MAJOR}")  # fmt: skip
    timings: dict[str, list[float]] = {
        "index DWARF + address map": [],
        "symbolise and rewrite": [],
        "JSON round trip": [],
        "total": [],
    }
    for _ in range(args.reps):
        started = time.perf_counter()
        _source_lines._module_dwarf.cache_clear()  # time a first reading every run
        info = _source_lines.DebugInfo({"speedtest1": module}, {"speedtest1": wasm}, WASMTIME_MAJOR)
        modules = info.modules()
        read = time.perf_counter()
        copy = json.loads(data)
        loaded = time.perf_counter()
        _source_lines.add_source_lines(copy, modules)
        symbolised = time.perf_counter()
        out = json.dumps(copy, ensure_ascii=False, separators=(",", ":")).encode()
        done = time.perf_counter()
        timings["index DWARF + address map"].append(read - started)
        timings["symbolise and rewrite"].append(symbolised - loaded)
        timings["JSON round trip"].append(done - symbolised + loaded - read)
        timings["total"].append(done - started)
    dwarf = modules["speedtest1"].dwarf
    print("decoded: {:,} of {:,} line sequences, the functions of {:,} of {:,} units".format(
        *dwarf.sequences_decoded, *dwarf.units_decoded))  # fmt: skip
    result = Profile.from_bytes(out)
    print(
        f"symbolised: {sum(1 for s in result.samples if s.stack and s.stack[-1].line):,} samples with a line"
    )
    for row in result.top_lines(3):
        print(f"  {row.self_percent:5.1f} %  {Path(row.file).name}:{row.line}  {row.function}")
    for name, values in timings.items():
        print(
            f"{name:<26} min {min(values):6.2f} s  median {statistics.median(values):6.2f} s  ({args.reps} runs)"
        )


if __name__ == "__main__":
    main()
