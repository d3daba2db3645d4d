"""The bundled example guest, and a one-command demo that profiles it."""

from __future__ import annotations

from importlib import resources

# One engine setup for the example and `wasmtime-gp run`; re-exported here for the example's users.
from wasmtime_gp.cli.common import profiling_engine

__all__ = ["guest_wat", "profiling_engine"]


def guest_wat() -> str:
    """The example guest's WebAssembly text (see guest.wat: `run(scale)`, about 0.1 s per unit)."""
    return resources.files(__name__).joinpath("guest.wat").read_text(encoding="utf-8")
