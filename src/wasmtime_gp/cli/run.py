"""`wasmtime-gp run`: run a module like `wasmtime run --profile=guest`, and always keep the profile."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

import wasmtime

from wasmtime_gp import report
from wasmtime_gp._errors import CommandError
from wasmtime_gp._symbols import module_name
from wasmtime_gp.cli.common import existing_file, parse_interval, profiling_engine
from wasmtime_gp.profiler import GuestProfiler

INTERRUPT_GRACE = 2.0  # seconds to wait for the guest to reach an epoch check after Ctrl-C
LIVE_LINE_PERIOD = 0.25


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add `run` and its options to `subparsers`; return its parser."""
    parser = subparsers.add_parser("run", help="run a module under the profiler and write its profile")
    parser.add_argument("module", type=Path, help="a .wasm or .wat file: a WASI command, or use --invoke")
    parser.add_argument("--invoke", metavar="FUNC", help="call this exported function instead of _start")
    parser.add_argument(
        "--interval", type=parse_interval, default=1e-3, help="sampling interval: 1ms, 100us, ..."
    )
    parser.add_argument("-o", "--output", type=Path, help="profile file (default: MODULE.profile.json)")
    parser.add_argument(
        "--dir", action="append", default=[], metavar="HOST::GUEST", help="preopen a directory"
    )
    parser.add_argument(
        "--env", action="append", default=[], metavar="K=V", help="set a guest environment variable"
    )
    parser.add_argument("--top", type=int, default=10, help="functions in the summary printed at the end")
    parser.add_argument(
        "args", nargs="*", help="the guest's arguments (put them after -- if they start with -)"
    )
    return parser


def _load(engine: wasmtime.Engine, path: Path) -> tuple[wasmtime.Module, bytes | None]:
    """The module, and its binary when it is one (it may carry DWARF); text modules have none."""
    data = existing_file(path).read_bytes()
    try:
        if path.suffix == ".wat" or not data.startswith(b"\0asm"):
            return wasmtime.Module(engine, data.decode("utf-8")), None
        return wasmtime.Module(engine, data), data
    except (wasmtime.WasmtimeError, UnicodeDecodeError) as exc:
        raise CommandError(f"{path}: not a valid WebAssembly module: {str(exc).splitlines()[0]}") from None


def _wasi(args: argparse.Namespace) -> wasmtime.WasiConfig:
    wasi = wasmtime.WasiConfig()
    wasi.argv = [args.module.name, *args.args]
    env = []
    for pair in args.env:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CommandError(f"--env {pair!r}: expected K=V")
        env.append((key, value))
    wasi.env = env
    for mapping in args.dir:
        host, sep, guest = mapping.partition("::")
        if not Path(host).is_dir():
            raise CommandError(f"--dir {mapping!r}: {host} is not a directory")
        wasi.preopen_dir(host, guest if sep else host)
    wasi.inherit_stdin()
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    return wasi


def _invocation(
    args: argparse.Namespace, store: wasmtime.Store, instance: wasmtime.Instance
) -> tuple[Any, list[Any]]:
    name = args.invoke or "_start"
    func = instance.exports(store).get(name)
    if not isinstance(func, wasmtime.Func):
        raise CommandError(
            f"{args.module}: no exported function {name!r}" + ("" if args.invoke else "; use --invoke")
        )
    if not args.invoke:
        return func, []
    params = [str(p) for p in func.type(store).params]
    if len(params) != len(args.args):
        raise CommandError(
            f"{name} takes {len(params)} arguments ({', '.join(params)}), {len(args.args)} given"
        )
    try:
        values = [int(v, 0) if p in ("i32", "i64") else float(v) for p, v in zip(params, args.args)]
    except ValueError as exc:
        raise CommandError(f"arguments of {name}: {exc}") from None
    return func, values


def run(args: argparse.Namespace) -> int:
    """Run the guest under the profiler and save its profile whatever happens.

    Returns the exit code: the guest's own, 1 if it trapped, 130 on Ctrl-C.
    """
    output = args.output or args.module.with_suffix(".profile.json")
    engine = profiling_engine()
    module, binary = _load(engine, args.module)
    store = wasmtime.Store(engine)
    store.set_wasi(_wasi(args))
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    try:
        instance = linker.instantiate(store, module)
    except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
        raise CommandError(f"{args.module}: cannot instantiate: {str(exc).splitlines()[0]}") from None
    func, values = _invocation(args, store, instance)

    name = module_name(module) or args.module.stem
    # A binary module may carry DWARF: then frames get source lines (a notice says when it has none).
    debug_info = {name: binary} if binary is not None else None
    profiler = GuestProfiler(store, [(name, module)], interval=args.interval, debug_info=debug_info)
    outcome: dict[str, Any] = {}

    def guest() -> None:
        try:
            outcome["result"] = func(store, *values)
        except BaseException as exc:  # noqa: BLE001 (the main thread reports it as the exit status)
            outcome["error"] = exc

    thread = threading.Thread(target=guest, name="wasmtime-gp guest", daemon=True)
    live = sys.stderr.isatty()
    started = time.monotonic()
    profiler.start()
    thread.start()
    interrupted = False
    try:
        while thread.is_alive():
            thread.join(LIVE_LINE_PERIOD)
            if live:
                elapsed = time.monotonic() - started
                print(
                    f"\r[wasmtime-gp] {elapsed:6.1f} s  {profiler.sample_count:,} samples",
                    end="",
                    file=sys.stderr,
                )
    except KeyboardInterrupt:
        interrupted = True
        profiler.interrupt()
        thread.join(INTERRUPT_GRACE)  # a guest blocked in a host call may not come back: save anyway
    if live:
        print("\r\x1b[K", end="", file=sys.stderr)
    path = profiler.save(output)

    code = 0
    error = outcome.get("error")
    if interrupted:
        print("wasmtime-gp: interrupted", file=sys.stderr)
        code = 130
    elif isinstance(error, wasmtime.ExitTrap):
        code = error.code
    elif error is not None:
        print(f"wasmtime-gp: the guest failed: {str(error).splitlines()[0]}", file=sys.stderr)
        code = 1
    elif args.invoke and outcome.get("result") is not None:
        print(outcome["result"])

    profile = profiler.profile()
    print(report.summary_line(profile), file=sys.stderr)
    print(report.top_table(profile, args.top, color=report.use_color(sys.stderr)), file=sys.stderr)
    if profile.has_lines:
        print(
            "\n" + report.lines_table(profile, args.top, color=report.use_color(sys.stderr)), file=sys.stderr
        )
    print(
        f"\nprofile: {path}\nview it: wasmtime-gp view {path}   (or: wasmtime-gp report {path} --tree --lines)",
        file=sys.stderr,
    )
    return code
