"""One benchmark run in a fresh process: python worker.py SPEC_JSON  ->  one line of JSON on stdout.

SPEC: {"workload": "example" | "minigzip" | "speedtest1", "config": "plain" | "epoch" | "python-peer" |
"wasmtime-gp" | "cli" | "cli-profile", "interval": seconds or null, "gil": bool, "programs": dir, "data": dir,
"cli": path of the wasmtime CLI}
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import wasmtime

from wasmtime_gp import GuestProfiler
from wasmtime_gp.example import guest_wat

sys.path.insert(0, str(Path(__file__).parent))
from python_peer import PythonPeerProfiler

EXAMPLE_SCALE = "10"  # about 1 s


def program_args(spec: dict[str, Any]) -> tuple[Path | None, list[str]]:
    """The module file (None: the bundled example) and the WASI argv."""
    programs = Path(spec["programs"])
    if spec["workload"] == "minigzip":
        return programs / "minigzip.wasm", ["minigzip", "-c", "/data/input.txt"]
    if spec["workload"] == "speedtest1":
        return programs / "speedtest1.wasm", ["speedtest1", "--memdb", "--size", "40"]
    return None, []


def burn_gil(stop: threading.Event) -> None:
    count = 0
    while not stop.is_set():
        count += 1


def run_in_wasmtime_py(spec: dict[str, Any]) -> dict[str, Any]:
    config = wasmtime.Config()
    config.epoch_interruption = spec["config"] != "plain"
    engine = wasmtime.Engine(config)
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(1 << 40)
    path, argv = program_args(spec)
    if path is None:
        module = wasmtime.Module(engine, guest_wat())
        run = wasmtime.Instance(store, module, []).exports(store)["run"]
        args: list[Any] = [int(EXAMPLE_SCALE)]
    else:
        module = wasmtime.Module.from_file(engine, str(path))
        wasi = wasmtime.WasiConfig()
        wasi.argv = argv
        wasi.preopen_dir(spec["data"], "/data")
        wasi.stdout_file = os.devnull
        store.set_wasi(wasi)
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        run = linker.instantiate(store, module).exports(store)["_start"]
        args = []
    assert isinstance(run, wasmtime.Func)

    profiler: GuestProfiler | PythonPeerProfiler | None = None
    if spec["config"] == "wasmtime-gp":
        profiler = GuestProfiler(store, [module], interval=spec["interval"])
    elif spec["config"] == "python-peer":
        profiler = PythonPeerProfiler(store, module, spec["workload"], spec["interval"])

    stop_burner = threading.Event()
    burner = threading.Thread(target=burn_gil, args=(stop_burner,))
    if spec["gil"]:
        burner.start()
    cpu_before = process_cpu_s(resource.RUSAGE_SELF)
    if profiler is not None:
        profiler.start()
    started = time.perf_counter()
    try:
        run(store, *args)
    except wasmtime.ExitTrap as exit_trap:
        if exit_trap.code != 0:
            raise
    wall = time.perf_counter() - started
    if profiler is not None:
        profiler.stop()
    result: dict[str, Any] = {"wall_s": wall, "cpu_s": process_cpu_s(resource.RUSAGE_SELF) - cpu_before}
    if profiler is not None:
        result["samples"] = profiler.sample_count
        if isinstance(profiler, GuestProfiler):
            result["sampling_s"] = profiler.sampling_time
        finish_started = time.perf_counter()
        result["profile_bytes"] = len(profiler.finish())
        result["finish_s"] = time.perf_counter() - finish_started
    if spec["gil"]:
        stop_burner.set()
        burner.join()
    result["peak_rss_kb"] = peak_rss_kb()
    return result


def process_cpu_s(who: int) -> float:
    """User and system CPU time of this process (or its waited-for children): what a CPU quota bills."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def peak_rss_kb() -> int:
    """This process's peak RSS. Not getrusage: its ru_maxrss survives execve, so a worker would inherit the
    high-water mark of the runner that forked it."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_in_cli(spec: dict[str, Any]) -> dict[str, Any]:
    path, argv = program_args(spec)
    command = [spec["cli"], "run"]
    with tempfile.TemporaryDirectory() as scratch:
        profile = Path(scratch) / "profile.json"
        if spec["config"] == "cli-profile":
            command.append(f"--profile=guest,{profile},{round(spec['interval'] * 1e6)}us")
        if path is None:
            example = Path(scratch) / "example.wat"
            example.write_text(guest_wat())
            command += ["--invoke", "run", str(example), EXAMPLE_SCALE]
        else:
            command += ["--dir", f"{spec['data']}::/data", str(path), *argv[1:]]
        cpu_before = process_cpu_s(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        # The whole process, compiling included (as in the `cli` baseline).
        cpu = process_cpu_s(resource.RUSAGE_CHILDREN) - cpu_before
        result: dict[str, Any] = {"wall_s": wall, "cpu_s": cpu}
        if spec["config"] == "cli-profile":
            data = profile.read_bytes()
            thread = json.loads(data)["threads"][0]
            result["profile_bytes"] = len(data)
            result["samples"] = thread["samples"]["length"]
            # The CLI's wall time includes compiling the module; its profile spans the run alone.
            result["profiled_s"] = thread["processShutdownTime"] / 1000
    result["peak_rss_kb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return result


def main() -> None:
    spec = json.loads(sys.argv[1])
    runner = run_in_cli if spec["config"].startswith("cli") else run_in_wasmtime_py
    print(json.dumps(runner(spec)))


if __name__ == "__main__":
    main()
