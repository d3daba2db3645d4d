"""What the commands share: reading a profile, intervals with units, the engine they profile, `--host`."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import wasmtime

from wasmtime_gp._errors import CommandError
from wasmtime_gp.profile import Profile

_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_interval(text: str) -> float:
    """`10ms`, `100us`, `1s` -> seconds. A bare number is refused: the wasmtime CLI reads it as seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|ms|us|µs|ns)\s*", text)
    if match is None:
        hint = f" (did you mean {text}ms or {text}us?)" if re.fullmatch(r"\s*[\d.]+\s*", text) else ""
        raise argparse.ArgumentTypeError(f"interval {text!r} needs a unit: s, ms, us or ns{hint}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def existing_file(path: Path) -> Path:
    """`path` itself, or CommandError (exit code 2) when it is not a file."""
    if not path.is_file():
        raise CommandError(f"{path}: no such file")
    return path


def load_profile(path: Path) -> Profile:
    """The profile at `path`: CommandError if there is no such file, ProfileFormatError if it is not a profile."""
    return Profile.load(existing_file(path))


def profiling_engine() -> wasmtime.Engine:
    """An engine with epoch interruption, which the profiler needs (`run` and the bundled example use it)."""
    config = wasmtime.Config()
    config.epoch_interruption = True
    return wasmtime.Engine(config)


def add_host_option(parser: argparse.ArgumentParser) -> None:
    """`--host include|exclude|only`, for the commands that read a profile's samples."""
    parser.add_argument(
        "--host",
        choices=["include", "exclude", "only"],
        default="include",
        help="samples in the host (wrapped host calls, and time outside wasm): keep them (default), "
        "leave them out, or show only them",
    )
