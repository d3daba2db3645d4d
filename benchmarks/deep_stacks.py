"""Reading deep stacks: load, top, call_tree, the text report and each export, at 10,000 and 100,000 frames.

    python benchmarks/deep_stacks.py                    # depths 10000 100000, 5 runs each
    python benchmarks/deep_stacks.py --rev HEAD~3       # the Python files of a git revision (the built extension)
    python benchmarks/deep_stacks.py --depths 10000 --reps 3
    python benchmarks/deep_stacks.py --profiles build/deep --rev HEAD~3   # then again without --rev: same files

The profiles are real: a guest recursing DEPTH frames (`eval` and `apply` calling each other, as an interpreter
does) and then spinning at the bottom, sampled by GuestProfiler every 1 ms (10,000) or 20 ms (deeper) for
about 2 s. Each measurement is a fresh process
that loads the profile (timed as `load`) and then runs one operation; it prints min and median of the times and
the largest peak RSS growth over the process's RSS before the load. A run that fails (an exception, the 3 GiB
address-space limit, or the 300 s timeout) is reported as such.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the tests' deep guest: one recursion for both
from guests import DEEP as GUEST

OPERATIONS = ["load", "top", "call_tree", "report", "collapsed", "speedscope", "pprof", "html"]
MEMORY_LIMIT = 3 << 30
TIMEOUT = 300


# Writes the profile of a DEPTH-deep recursion. A wasm frame of this guest takes 32 bytes of native stack, so
# 100,000 frames need more than Wasmtime's default 2 MiB limit, which the C API caps at the async stack size.
PROFILE_WRITER = """
import ctypes, sys, threading
import wasmtime
from wasmtime_gp import GuestProfiler

guest, depth, spins, interval, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
config = wasmtime.Config()
config.epoch_interruption = True
set_async_stack = wasmtime._ffi.dll.wasmtime_config_async_stack_size_set
set_async_stack.argtypes, set_async_stack.restype = [ctypes.c_void_p, ctypes.c_size_t], None
set_async_stack(ctypes.cast(config.ptr(), ctypes.c_void_p), 16 << 20)
config.max_wasm_stack = 16 << 20
engine = wasmtime.Engine(config)
store = wasmtime.Store(engine)
module = wasmtime.Module(engine, guest)
run = wasmtime.Instance(store, module, []).exports(store)["run"]
threading.stack_size(64 << 20)  # the guest's thread: wasm runs on the native stack

def profile():
    with GuestProfiler(store, [module], interval=interval) as profiler:
        run(store, depth, spins)
    profiler.save(path)

thread = threading.Thread(target=profile)
thread.start()
thread.join()
"""

# One measurement: load the profile, then run one operation; print the times and the peak RSS growth.
MEASURE = """
import json, resource, sys, time
source, operation, path = sys.argv[1], sys.argv[2], sys.argv[3]
if source:  # another revision's Python files: bypass the editable install's finder
    sys.meta_path[:] = [f for f in sys.meta_path if "Redirecting" not in type(f).__name__]
    sys.path.insert(0, source)
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from wasmtime_gp import Profile, report
from wasmtime_gp.exports import FORMATS

def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()

before = rss()
result = {{}}
try:
    started = time.perf_counter()
    profile = Profile.load(path)
    result["load"] = time.perf_counter() - started
    started = time.perf_counter()
    if operation == "top":
        profile.top(15)
    elif operation == "call_tree":
        profile.call_tree()
    elif operation == "report":
        report.render(profile, tree=True)
    elif operation != "load":
        FORMATS[operation](profile)
    if operation != "load":
        result[operation] = time.perf_counter() - started
except BaseException as exc:
    result["error"] = type(exc).__name__
result["rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
print(json.dumps(result))
"""


def write_profile(depth: int, path: Path) -> None:
    """Write the profile of about 2 s at the bottom of the recursion."""
    spins = 1_000_000_000
    interval = 0.001 if depth <= 10_000 else 0.02  # Wasmtime takes about 1 ms per 10,000 frames per sample
    command = [sys.executable, "-c", PROFILE_WRITER, GUEST, str(depth), str(spins), str(interval), str(path)]
    subprocess.run(command, check=True)


def package_at(rev: str, directory: Path) -> Path:
    """The package's Python files as of `rev`, beside the extension modules built here."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src/wasmtime_gp"], capture_output=True,
                             check=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    import wasmtime_gp._core

    built = Path(wasmtime_gp._core.__file__).parent
    for extension in built.glob("*.so"):
        shutil.copy(extension, directory / "src" / "wasmtime_gp" / extension.name)
    return directory / "src"


def measure(source: str, operation: str, path: Path) -> dict[str, object]:
    code = MEASURE.format(limit=MEMORY_LIMIT)
    try:
        done = subprocess.run([sys.executable, "-c", code, source, operation, str(path)], capture_output=True,
                              text=True, timeout=TIMEOUT, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"error": f"timeout {TIMEOUT} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        return {"error": f"exit {done.returncode}: {(done.stderr.strip().splitlines() or [''])[-1]}"}
    result: dict[str, object] = json.loads(lines[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--depths", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--rev", help="measure the Python files of this git revision")
    parser.add_argument("--operations", nargs="+", default=OPERATIONS, choices=OPERATIONS)
    parser.add_argument(
        "--profiles", type=Path, help="keep the profiles here, and reuse those found (compare runs)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="deep-stacks-") as temp:
        source = str(package_at(args.rev, Path(temp))) if args.rev else ""
        print(
            f"revision: {args.rev or 'working tree'}; {args.reps} runs each; Python {sys.version.split()[0]}"
        )
        print(f"{'depth':>7}  {'samples':>7}  {'profile KB':>10}  {'operation':<10}  {'min s':>8}  {'median s':>8}  "
              f"{'peak RSS +MB':>12}")  # fmt: skip
        for depth in args.depths:
            path = (args.profiles or Path(temp)) / f"deep{depth}.json"
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                write_profile(depth, path)
            samples = len(json.loads(path.read_bytes())["threads"][0]["samples"]["stack"])
            size = path.stat().st_size / 1024
            for operation in args.operations:
                runs = [measure(source, operation, path) for _ in range(args.reps)]
                errors = sorted({str(run["error"]) for run in runs if "error" in run})
                times = [float(run[operation]) for run in runs if operation in run]  # type: ignore[arg-type]
                rss = max(int(run.get("rss", 0)) for run in runs) / (1 << 20)  # type: ignore[call-overload]
                if errors:
                    shown = f"{'failed: ' + ', '.join(errors):>18}"
                else:
                    shown = f"{min(times):8.3f}  {statistics.median(times):8.3f}"
                print(
                    f"{depth:>7}  {samples:>7}  {size:>10.0f}  {operation:<10}  {shown}  {rss:>12.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
