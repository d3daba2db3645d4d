"""Collapsed (folded) stacks: `outer;middle;inner 42` per line, as flamegraph.pl, inferno and Pyroscope read."""

from __future__ import annotations

from collections import Counter

from wasmtime_gp.profile import Frame, Profile, tallies


def _label(frame: Frame, with_module: bool, with_line: bool) -> str:
    # ';' separates frames and a newline ends the record: neither may appear inside a name.
    name = f"{frame.module}`{frame.function}" if with_module and frame.is_wasm else frame.function
    if with_line and frame.line is not None:
        name += f":{frame.line}"
    return name.replace(";", ":").replace("\n", " ").replace("\r", " ")


def to_collapsed(profile: Profile, with_module: bool | None = None, lines: bool = False) -> str:
    """One line per distinct stack, root first; `module`function` labels when several modules appear.

    With `lines`, frames that have a source line are labelled `function:line`, so a function's lines split.
    """
    found, _ = tallies(profile.samples)  # each distinct stack once, however many samples it has
    if with_module is None:
        modules = {t.table.frame[s].module for t in found for s in t.sampled() if t.table.frame[s].is_wasm}
        with_module = len(modules) > 1
    counts: Counter[str] = Counter()
    for tally in found:
        labels: dict[int, str] = {}  # by Frame object: the table shares them between its stacks
        for stack in tally.sampled():
            if tally.ends[stack]:
                names = []
                for frame in tally.table.frames(stack):
                    label = labels.get(id(frame))
                    if label is None:
                        label = labels[id(frame)] = _label(frame, with_module, lines)
                    names.append(label)
                counts[";".join(names)] += tally.ends[stack]
    lines_out = [f"{stack} {count}" for stack, count in sorted(counts.items())]
    return "\n".join(lines_out) + ("\n" if lines_out else "")
