"""speedscope's file format (https://www.speedscope.app/file-format-schema.json): one sampled profile."""

from __future__ import annotations

import json

from wasmtime_gp._version import __version__
from wasmtime_gp.profile import Frame, Profile


def _frame(frame: Frame) -> dict[str, object]:
    """A function: its source file and first line where DWARF gave them, else its module."""
    entry: dict[str, object] = {"name": frame.function, "file": frame.file or frame.module}
    if frame.function_line is not None:
        entry["line"] = frame.function_line
    return entry


def to_speedscope(profile: Profile) -> str:
    frames: dict[Frame, int] = {}
    stacks: list[list[int]] = []
    weights: list[float] = []
    for sample in profile.samples:
        if not sample.stack:
            continue
        stacks.append([frames.setdefault(frame, len(frames)) for frame in sample.stack])
        weights.append(profile.interval)  # each sample stands for one interval of guest time
    document = {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "name": profile.name,
        "exporter": f"wasmtime-gp {__version__}",
        "activeProfileIndex": 0,
        "shared": {"frames": [_frame(frame) for frame in frames]},
        "profiles": [
            {
                "type": "sampled",
                "name": profile.name,
                "unit": "seconds",
                "startValue": 0,
                "endValue": sum(weights),
                "samples": stacks,
                "weights": weights,
            }
        ],
    }
    return json.dumps(document, ensure_ascii=False)
