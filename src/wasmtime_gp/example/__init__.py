"""The bundled example guest, and a one-command demo that profiles it."""

from __future__ import annotations

from importlib import resources

import wasmtime


def guest_wat() -> str:
    """The example guest's WebAssembly text (see guest.wat: `run(scale)`, about 0.1 s per unit)."""
    return resources.files(__name__).joinpath("guest.wat").read_text(encoding="utf-8")


def profiling_engine() -> wasmtime.Engine:
    """An engine with epoch interruption, which the profiler needs."""
    config = wasmtime.Config()
    config.epoch_interruption = True
    return wasmtime.Engine(config)
