"""Collapsed (folded) stacks: `outer;middle;inner 42` per line, as flamegraph.pl, inferno and Pyroscope read."""

from __future__ import annotations

from collections import Counter

from wasmtime_gp.profile import Frame, Profile


def _label(frame: Frame, with_module: bool, with_line: bool) -> str:
    # ';' separates frames and a newline ends the record: neither may appear inside a name.
    name = f"{frame.module}`{frame.function}" if with_module and not frame.is_host else frame.function
    if with_line and frame.line is not None:
        name += f":{frame.line}"
    return name.replace(";", ":").replace("\n", " ").replace("\r", " ")


def to_collapsed(profile: Profile, with_module: bool | None = None, lines: bool = False) -> str:
    """One line per distinct stack, root first; `module`function` labels when several modules appear.

    With `lines`, frames that have a source line are labelled `function:line`, so a function's lines split.
    """
    if with_module is None:
        with_module = len({f.module for s in profile.samples for f in s.stack if not f.is_host}) > 1
    counts = Counter(
        ";".join(_label(frame, with_module, lines) for frame in sample.stack)
        for sample in profile.samples
        if sample.stack
    )
    lines_out = [f"{stack} {count}" for stack, count in sorted(counts.items())]
    return "\n".join(lines_out) + ("\n" if lines_out else "")
