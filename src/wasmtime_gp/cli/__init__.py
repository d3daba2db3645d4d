"""The command line, `wasmtime-gp` / `python -m wasmtime_gp`: one module per command, as memray's commands/.

Each command module has `add_parser(subparsers)` and `run(args) -> int`; this one builds the parser from
COMMANDS and turns what a command raises into one line on stderr and an exit code.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Protocol

from wasmtime_gp._errors import CommandError, GuestProfilerError
from wasmtime_gp.cli import convert, diff, merge, report, run, view


class Command(Protocol):
    """What a command module provides (the modules themselves satisfy it, checked by mypy)."""

    def add_parser(
        self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]
    ) -> argparse.ArgumentParser: ...

    def run(self, args: argparse.Namespace) -> int: ...


COMMANDS: tuple[Command, ...] = (run, report, diff, convert, merge, view)

_DEBUG_HELP = "show the traceback of an unexpected error (to report it)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wasmtime-gp",
        description="Profile WebAssembly guests run by wasmtime-py, and read the profiles.",
    )
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command_parser = command.add_parser(subparsers)
        command_parser.set_defaults(handler=command.run)
        # After the command too; SUPPRESS keeps the global one when it is not given here.
        command_parser.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on `argv` (default: sys.argv[1:]) and return the process's exit code.

    0 on success; for `run`, the guest's own code, 1 if it trapped; 2 for bad input (one line on stderr);
    130 on Ctrl-C; 1 for an unexpected error (one line, or its traceback with --debug).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first "--" belongs to the guest, even words that look like options.
    guest_args: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, guest_args = argv[:split], argv[split + 1 :]
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        args.args = [*args.args, *guest_args]
    elif guest_args:
        parser.error(f"unexpected arguments after --: {' '.join(guest_args)}")
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except (GuestProfilerError, OSError) as exc:  # bad input: a missing file, not a profile, a port in use
        print(f"wasmtime-gp {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, CommandError) else 2
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
