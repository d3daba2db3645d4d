"""The text report: a summary line, a top-N table and a call tree with percentages."""

from __future__ import annotations

import os
from typing import TextIO

from wasmtime_gp.diff import BLOCKS, ProfileDiff
from wasmtime_gp.profile import CallNode, Frame, Profile

_RESET, _BOLD, _DIM = "\x1b[0m", "\x1b[1m", "\x1b[2m"
_RED, _YELLOW, _GREEN = "\x1b[31m", "\x1b[33m", "\x1b[32m"


def use_color(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    return stream.isatty() and "NO_COLOR" not in os.environ


class _Paint:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, *codes: str) -> str:
        return f"{''.join(codes)}{text}{_RESET}" if self.enabled and codes else text

    def percent(self, value: float, text: str) -> str:
        # The colour bands of pyinstrument: hot, warm, noticeable, the rest dimmed.
        code = _RED if value >= 60 else _YELLOW if value >= 30 else _GREEN if value >= 10 else _DIM
        return self(text, code)


def summary_line(profile: Profile) -> str:
    every = _duration(profile.interval)
    if profile.effective_interval is not None and profile.effective_interval > profile.interval * 1.05:
        effective = _duration(float(f"{profile.effective_interval:.3g}"))
        every += f" (lengthened to {effective} on average by the overhead budget)"
    line = (
        f"{profile.name}: {profile.sample_count:,} samples every {every} "
        f"over {profile.duration:.2f} s (guest CPU {profile.cpu_time:.2f} s)"
    )
    host = profile.host_sample_count
    if host:
        line += f"; {100 * host / profile.sample_count:.1f} % in host calls"
    on_cpu, off_cpu = profile.outside_sample_counts
    if on_cpu + off_cpu:
        share = 100 / profile.sample_count
        line += (
            f"; {share * (on_cpu + off_cpu):.1f} % outside wasm: {share * on_cpu:.1f} % on CPU, "
            f"{share * off_cpu:.1f} % off CPU"
        )
    return line


def _module_label(frame: Frame, paint: _Paint) -> str:
    return " " + paint(f"[{frame.module}]", _DIM) if frame.is_wasm else ""


def top_table(profile: Profile, n: int = 15, color: bool = False) -> str:
    paint = _Paint(color)
    rows = profile.top(n, by="self")
    lines = [paint(f"{'self %':>7}  {'total %':>7}  {'samples':>8}  function [module]", _BOLD)]
    lines.extend(
        f"{paint.percent(row.self_percent, f'{row.self_percent:7.1f}')}  "
        f"{paint.percent(row.total_percent, f'{row.total_percent:7.1f}')}  "
        f"{row.self_samples:8,}  {paint(row.frame.function, _BOLD)}{_module_label(row.frame, paint)}"
        for row in rows
    )
    if not rows:
        lines.append("  (no samples with guest frames)")
    return "\n".join(lines)


def lines_table(profile: Profile, n: int = 15, color: bool = False) -> str:
    """The hottest source lines, with the line's text where the source file is readable here."""
    paint = _Paint(color)
    rows = profile.top_lines(n)
    if not rows:
        return "(no source lines: profile with debug_info= / a .wasm built with -g)"
    lines = [paint(f"{'self %':>7}  {'total %':>7}  {'samples':>8}  file:line  function", _BOLD)]
    sources = _SourceFiles()
    for row in rows:
        lines.append(
            f"{paint.percent(row.self_percent, f'{row.self_percent:7.1f}')}  "
            f"{paint.percent(row.total_percent, f'{row.total_percent:7.1f}')}  "
            f"{row.self_samples:8,}  {paint(f'{row.file}:{row.line}', _BOLD)}  {row.function}"
        )
        text = sources.line(row.file, row.line)
        if text:
            lines.append(f"{'':>29}{paint('| ' + text, _DIM)}")
    return "\n".join(lines)


class _SourceFiles:
    def __init__(self) -> None:
        self._files: dict[str, list[str] | None] = {}

    def line(self, path: str, number: int) -> str | None:
        if path not in self._files:
            try:
                with open(path, encoding="utf-8", errors="replace") as file:
                    self._files[path] = file.read().splitlines()
            except OSError:
                self._files[path] = None
        text = self._files[path]
        return text[number - 1].strip() if text and 0 < number <= len(text) else None


def call_tree(profile: Profile, min_percent: float = 1.0, max_depth: int = 40, color: bool = False) -> str:
    """The call tree, pruned of nodes under `min_percent` of all samples and below `max_depth` levels."""
    paint = _Paint(color)
    root = profile.call_tree()
    total = max(root.total, 1)
    lines: list[str] = []

    def shown(node: CallNode) -> list[CallNode]:
        return [c for c in node.sorted_children() if 100 * c.total / total >= min_percent]

    # (node, its line's indent, its children's indent, its caller's module, depth): a stack, not recursion.
    pending: list[tuple[CallNode, str, str, str | None, int]] = [
        (child, "", "", None, 1) for child in reversed(shown(root))
    ]
    while pending:
        node, indent, child_indent, module, depth = pending.pop()
        assert node.frame is not None
        percent = 100 * node.total / total
        label = paint(node.frame.function, _BOLD)
        if node.frame.module != module:
            label += _module_label(node.frame, paint)
        lines.append(f"{indent}{paint.percent(percent, f'{percent:5.1f}%')} {label}")
        children = shown(node)
        if depth >= max_depth and children:
            lines.append(f"{child_indent}└─ {paint('...', _DIM)}")
            continue
        for index in range(len(children) - 1, -1, -1):
            last = index == len(children) - 1
            pending.append((
                children[index],
                child_indent + ("└─ " if last else "├─ "),
                child_indent + ("   " if last else "│  "),
                node.frame.module,
                depth + 1,
            ))  # fmt: skip
    if not lines:
        lines.append("(no samples with guest frames)")
    return "\n".join(lines)


def diff_table(diff: ProfileDiff, n: int = 20, color: bool = False) -> str:
    """The `n` largest changes of share, those beyond sampling noise marked `*` (and coloured: red grown, green
    shrunk)."""
    paint = _Paint(color)
    what = "self samples (innermost)" if diff.by == "self" else "total samples (anywhere on the stack)"
    header = (
        f"base {diff.base_samples:,} samples, new {diff.new_samples:,}; shares of {what}; * beyond sampling "
        f"noise (two-proportion z-test, widened by the spread over {BLOCKS} blocks of samples; "
        f"p < {diff.alpha:g} / {len(diff.changes)} functions)"
    )
    lines = [
        header,
        "",
        paint(
            f"{'change':>8}  {'base %':>7}  {'new %':>7}  {'base':>8}  {'new':>8}  function [module]", _BOLD
        ),
    ]
    for row in diff.changes[:n]:
        change = f"{'*' if row.significant else ' '}{row.change:+7.1f}"
        code = (_RED if row.change > 0 else _GREEN) if row.significant else _DIM
        lines.append(
            f"{paint(change, code)}  {row.base_percent:7.1f}  {row.new_percent:7.1f}  {row.base_samples:8,}  "
            f"{row.new_samples:8,}  {paint(row.frame.function, _BOLD)}{_module_label(row.frame, paint)}"
        )
    if not diff.changes:
        lines.append("  (no samples with guest frames in either profile)")
    return "\n".join(lines) + "\n"


def render(profile: Profile, top: int = 15, tree: bool = True, color: bool = False, lines: int = 0) -> str:
    parts = [summary_line(profile), "", top_table(profile, top, color)]
    if lines:
        parts += ["", lines_table(profile, lines, color)]
    if tree:
        parts += ["", call_tree(profile, color=color)]
    return "\n".join(parts) + "\n"


def _duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:g} ms"
    return f"{seconds * 1e6:g} us"
