"""`wasmtime-gp diff BASE NEW`: which functions' shares of the samples changed, and which beyond sampling noise."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wasmtime_gp._errors import CommandError
from wasmtime_gp._files import atomic_write, check_writable
from wasmtime_gp.cli.common import add_host_option, load_profile
from wasmtime_gp.diff import ALPHA
from wasmtime_gp.exports import to_diff_html, to_pprof
from wasmtime_gp.report import diff_table, use_color


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add `diff` and its options to `subparsers`; return its parser."""
    parser = subparsers.add_parser("diff", help="compare two profiles, function by function")
    parser.add_argument("base", type=Path, help="the profile to compare against (before)")
    parser.add_argument("new", type=Path, help="the profile to compare (after)")
    parser.add_argument("--top", type=int, default=20, help="rows: the largest changes first")
    parser.add_argument(
        "--by", choices=["self", "total"], default="self",
        help="compare self samples (innermost, the default) or total samples (anywhere on the stack)",
    )  # fmt: skip
    parser.add_argument(
        "--alpha", type=float, default=ALPHA,
        help=f"the chance of any false alarm on an unchanged program (default {ALPHA:g})",
    )  # fmt: skip
    parser.add_argument(
        "--to", choices=["pprof"],
        help="also write both profiles for `go tool pprof -diff_base`: OUTPUT/base.pb.gz, OUTPUT/new.pb.gz",
    )  # fmt: skip
    parser.add_argument("-o", "--output", type=Path, help="the directory for --to")
    parser.add_argument(
        "--html", type=Path, metavar="FILE",
        help="also write a differential flame graph to FILE (offline; red: a larger share than in base)",
    )  # fmt: skip
    add_host_option(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Print the changes on stdout (in colour on a terminal), and write --to's files; return the exit code."""
    if (args.to is None) != (args.output is None):
        raise CommandError("--to and --output go together")
    if not 0 < args.alpha < 1:
        raise CommandError(f"--alpha must be between 0 and 1, not {args.alpha:g}")
    if args.html is not None:
        check_writable(args.html)  # before the table: nothing printed for a page that cannot be written
    base = load_profile(args.base).filter_host(args.host)
    new = load_profile(args.new).filter_host(args.host)
    sys.stdout.write(
        diff_table(new.diff(base, by=args.by, alpha=args.alpha), args.top, use_color(sys.stdout))
    )
    if args.html is not None:
        print(f"wrote {atomic_write(args.html, to_diff_html(base, new).encode())}")
    if args.to == "pprof":
        args.output.mkdir(parents=True, exist_ok=True)
        written = [atomic_write(args.output / f"{name}.pb.gz", to_pprof(profile)) for name, profile in
                   (("base", base), ("new", new))]  # fmt: skip
        print(f"wrote {written[0]} and {written[1]}: go tool pprof -diff_base {written[0]} {written[1]}")
    return 0
