"""Collapsed (folded) stacks: `outer;middle;inner 42` per line, as flamegraph.pl, inferno and Pyroscope read."""

from __future__ import annotations

from wasmtime_gp.profile import Frame, Profile


def _label(frame: Frame, with_module: bool) -> str:
    # ';' separates frames and a newline ends the record: neither may appear inside a name.
    name = f"{frame.module}`{frame.function}" if with_module and not frame.is_host else frame.function
    return name.replace(";", ":").replace("\n", " ").replace("\r", " ")


def to_collapsed(profile: Profile, with_module: bool | None = None) -> str:
    """One line per distinct stack, root first; `module`function` labels when several modules appear."""
    counts = profile.stack_counts()
    if with_module is None:
        with_module = len({frame.module for stack in counts for frame in stack if not frame.is_host}) > 1
    lines = [
        f"{';'.join(_label(frame, with_module) for frame in stack)} {count}"
        for stack, count in sorted(counts.items(), key=lambda item: [str(f) for f in item[0]])
        if stack
    ]
    return "\n".join(lines) + ("\n" if lines else "")
