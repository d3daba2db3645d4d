"""The command line: `wasmtime-gp` / `python -m wasmtime_gp` with run, report, convert and view."""

from __future__ import annotations

import argparse
import re
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from wasmtime_gp._errors import GuestProfilerError
from wasmtime_gp.profile import Profile

_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_interval(text: str) -> float:
    """`10ms`, `100us`, `1s` -> seconds. A bare number is refused: the wasmtime CLI reads it as seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|ms|us|µs|ns)\s*", text)
    if match is None:
        hint = f" (did you mean {text}ms or {text}us?)" if re.fullmatch(r"\s*[\d.]+\s*", text) else ""
        raise argparse.ArgumentTypeError(f"interval {text!r} needs a unit: s, ms, us or ns{hint}")
    return float(match.group(1)) * _UNITS[match.group(2)]


class CommandError(Exception):
    """A problem to report as one line on stderr with exit code 2."""


_DEBUG_HELP = "show the traceback of an unexpected error (to report it)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wasmtime-gp",
        description="Profile WebAssembly guests run by wasmtime-py, and read the profiles.",
    )
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a module under the profiler and write its profile")
    run.add_argument("module", type=Path, help="a .wasm or .wat file: a WASI command, or use --invoke")
    run.add_argument("--invoke", metavar="FUNC", help="call this exported function instead of _start")
    run.add_argument(
        "--interval", type=parse_interval, default=1e-3, help="sampling interval: 1ms, 100us, ..."
    )
    run.add_argument("-o", "--output", type=Path, help="profile file (default: MODULE.profile.json)")
    run.add_argument("--dir", action="append", default=[], metavar="HOST::GUEST", help="preopen a directory")
    run.add_argument(
        "--env", action="append", default=[], metavar="K=V", help="set a guest environment variable"
    )
    run.add_argument("--top", type=int, default=10, help="functions in the summary printed at the end")
    run.add_argument("args", nargs="*", help="the guest's arguments (put them after -- if they start with -)")

    report = commands.add_parser("report", help="print a profile's top functions and call tree")
    report.add_argument("profile", type=Path)
    report.add_argument("--top", type=int, default=15, help="rows in the top table")
    report.add_argument("--tree", action="store_true", help="also print the call tree")
    report.add_argument(
        "--lines", type=int, nargs="?", const=15, default=0, metavar="N",
        help="also print the N hottest source lines (default 15; needs a profile taken with DWARF)",
    )  # fmt: skip
    _host_option(report)

    convert = commands.add_parser("convert", help="convert a profile for another tool")
    convert.add_argument("profile", type=Path)
    convert.add_argument("--to", required=True, choices=["collapsed", "speedscope", "pprof", "html"])
    convert.add_argument("-o", "--output", type=Path, required=True)
    convert.add_argument("--lines", action="store_true", help="collapsed: label frames function:line")
    _host_option(convert)

    merge = commands.add_parser("merge", help="merge profiles (stores, threads) into one, a thread each")
    merge.add_argument("profiles", type=Path, nargs="+")
    merge.add_argument("-o", "--output", type=Path, required=True)
    merge.add_argument("--name", action="append", help="thread name for each input, in order")

    view = commands.add_parser("view", help="open a profile in the Firefox Profiler (served from localhost)")
    view.add_argument("profile", type=Path)
    view.add_argument("--offline", action="store_true", help="open the HTML flame graph instead (no network)")
    view.add_argument("--port", type=int, default=0, help="port for the local server (default: any free one)")
    view.add_argument("--no-browser", action="store_true", help="only print the address")
    for command in (run, report, convert, merge, view):  # after the command too; SUPPRESS keeps a global one
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
    return parser


def _host_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--host",
        choices=["include", "exclude", "only"],
        default="include",
        help="samples inside host functions (wrapped with wasmtime_gp.host_calls): keep them (default), "
        "leave them out, or show only them",
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first "--" belongs to the guest, even words that look like options.
    guest_args: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, guest_args = argv[:split], argv[split + 1 :]
    args = _parser().parse_args(argv)
    if args.command == "run":
        args.args = [*args.args, *guest_args]
    elif guest_args:
        _parser().error(f"unexpected arguments after --: {' '.join(guest_args)}")
    try:
        if args.command == "run":
            from wasmtime_gp._cli_run import run_command

            return run_command(args)
        if args.command == "report":
            return _report(args)
        if args.command == "convert":
            return _convert(args)
        if args.command == "merge":
            return _merge(args)
        from wasmtime_gp._cli_view import view_command

        return view_command(args)
    except (CommandError, GuestProfilerError, OSError) as exc:
        print(f"wasmtime-gp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"wasmtime-gp {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 (a bug of ours: one line, not a traceback, unless --debug)
        if args.debug:
            traceback.print_exc()
        else:
            what = (str(exc).strip().splitlines() or [""])[0][:200]
            print(
                f"wasmtime-gp {args.command}: internal error: {type(exc).__name__}{': ' + what if what else ''}; "
                "please report it with the traceback from --debug",
                file=sys.stderr,
            )
        return 1


def load_profile(path: Path) -> Profile:
    if not path.is_file():
        raise CommandError(f"{path}: no such file")
    return Profile.load(path)


def _report(args: argparse.Namespace) -> int:
    from wasmtime_gp import report

    profile = load_profile(args.profile).filter_host(args.host)
    color = report.use_color(sys.stdout)
    sys.stdout.write(report.render(profile, top=args.top, tree=args.tree, color=color, lines=args.lines))
    return 0


def _merge(args: argparse.Namespace) -> int:
    from wasmtime_gp.merge import merge_profiles

    for path in args.profiles:
        load_profile(path)  # one clear error for the first input that is not a profile
    merged = merge_profiles([path.read_bytes() for path in args.profiles], args.name)
    args.output.write_bytes(merged)
    print(f"wrote {args.output} ({len(args.profiles)} threads)")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from wasmtime_gp.exports import FORMATS, to_collapsed

    profile = load_profile(args.profile).filter_host(args.host)
    if args.lines and args.to != "collapsed":
        raise CommandError("--lines applies to --to collapsed (the other formats carry lines already)")
    data = to_collapsed(profile, lines=True).encode() if args.lines else FORMATS[args.to](profile)
    args.output.write_bytes(data)
    print(f"wrote {args.output} ({args.to})")
    return 0
