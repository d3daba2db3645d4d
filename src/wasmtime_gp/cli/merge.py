"""`wasmtime-gp merge`: merge profiles (of several stores or threads) into one file, a thread each."""

from __future__ import annotations

import argparse
from pathlib import Path

from wasmtime_gp._files import atomic_write
from wasmtime_gp.cli.common import load_profile
from wasmtime_gp.merge import merge_profiles


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add `merge` and its options to `subparsers`; return its parser."""
    parser = subparsers.add_parser("merge", help="merge profiles (stores, threads) into one, a thread each")
    parser.add_argument("profiles", type=Path, nargs="+")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--name", action="append", help="thread name for each input, in order")
    return parser


def run(args: argparse.Namespace) -> int:
    """Write the merged profile to `--output` (atomically); return the exit code."""
    for path in args.profiles:
        load_profile(path)  # one clear error for the first input that is not a profile
    merged = merge_profiles([path.read_bytes() for path in args.profiles], args.name)
    atomic_write(args.output, merged)
    print(f"wrote {args.output} ({len(args.profiles)} threads)")
    return 0
