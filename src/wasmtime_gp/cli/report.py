"""`wasmtime-gp report`: print a profile's top functions, and optionally its call tree and hottest lines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wasmtime_gp.cli.common import add_host_option, load_profile
from wasmtime_gp.report import render, use_color


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add `report` and its options to `subparsers`; return its parser."""
    parser = subparsers.add_parser("report", help="print a profile's top functions and call tree")
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=15, help="rows in the top table")
    parser.add_argument("--tree", action="store_true", help="also print the call tree")
    parser.add_argument(
        "--lines", type=int, nargs="?", const=15, default=0, metavar="N",
        help="also print the N hottest source lines (default 15; needs a profile taken with DWARF)",
    )  # fmt: skip
    add_host_option(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Print the report on stdout (in colour on a terminal); return the exit code."""
    profile = load_profile(args.profile).filter_host(args.host)
    color = use_color(sys.stdout)
    sys.stdout.write(render(profile, top=args.top, tree=args.tree, color=color, lines=args.lines))
    return 0
