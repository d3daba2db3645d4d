"""Builds side by side: `--build LABEL=PYTHON`, an interpreter with another wasmtime-gp installed (the benchmarks'
before/after figures come from running both in one session)."""

from __future__ import annotations

import argparse


def add_build_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--build",
        action="append",
        default=[],
        metavar="LABEL=PYTHON",
        help=f"another build's interpreter: {what} (repeatable)",
    )


def pythons(args: argparse.Namespace) -> dict[str, str]:
    """LABEL -> interpreter, in the order given."""
    return dict(build.split("=", 1) for build in args.build)
