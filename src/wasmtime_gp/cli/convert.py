"""`wasmtime-gp convert`: write a profile in another tool's format (collapsed, speedscope, pprof, HTML)."""

from __future__ import annotations

import argparse
from pathlib import Path

from wasmtime_gp._errors import CommandError
from wasmtime_gp._files import atomic_write
from wasmtime_gp.cli.common import add_host_option, load_profile
from wasmtime_gp.exports import FORMATS, to_collapsed


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add `convert` and its options to `subparsers`; return its parser."""
    parser = subparsers.add_parser("convert", help="convert a profile for another tool")
    parser.add_argument("profile", type=Path)
    parser.add_argument("--to", required=True, choices=["collapsed", "speedscope", "pprof", "html"])
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--lines", action="store_true", help="collapsed: label frames function:line")
    add_host_option(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Write the converted profile to `--output` (atomically); return the exit code."""
    profile = load_profile(args.profile).filter_host(args.host)
    if args.lines and args.to != "collapsed":
        raise CommandError("--lines applies to --to collapsed (the other formats carry lines already)")
    data = to_collapsed(profile, lines=True).encode() if args.lines else FORMATS[args.to](profile)
    atomic_write(args.output, data)
    print(f"wrote {args.output} ({args.to})")
    return 0
