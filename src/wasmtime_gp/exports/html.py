"""A self-contained HTML flame graph (icicle, click to zoom, search): no network needed to view it."""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any

from wasmtime_gp.profile import CallNode, Profile
from wasmtime_gp.report import summary_line


def _flat_tree(root: CallNode, name: str, base: CallNode | None = None) -> dict[str, Any]:
    """The call tree as flat columns in depth-first order, each node naming its parent: no nesting, so neither
    this JSON nor the page's reading of it goes deeper with the stacks.

    With a `base` tree, the union of both: column `b` holds each node's base samples, and a call path found in
    one tree only has 0 samples in the other."""
    strings: dict[str, int] = {}
    columns: dict[str, list[int]] = {"n": [], "m": [], "v": [], "s": [], "p": []}
    if base is not None:
        columns["b"] = []
    pending: list[tuple[CallNode, CallNode | None, int]] = [(root, base, -1)]
    while pending:
        node, before, parent = pending.pop()
        index = len(columns["p"])
        frame = node.frame
        columns["n"].append(strings.setdefault(frame.function if frame else name, len(strings)))
        columns["m"].append(strings.setdefault(frame.module if frame else "", len(strings)))
        columns["v"].append(node.total)
        columns["s"].append(node.self)
        columns["p"].append(parent)
        if before is None:
            pending.extend((child, None, index) for child in reversed(node.sorted_children()))
            continue
        columns["b"].append(before.total)
        frames = [child.frame for child in (*node.sorted_children(), *before.sorted_children())]
        pairs = [
            (node.children.get(key) or CallNode(key), before.children.get(key) or CallNode(key))
            for key in dict.fromkeys(frames)
            if key is not None
        ]
        pending.extend((child, old, index) for child, old in reversed(pairs))
    return {"strings": list(strings), **columns}


def to_html(profile: Profile) -> str:
    """A flame graph of `profile`."""
    return _page(profile.name, summary_line(profile), _flat_tree(profile.call_tree(), "all"))


def to_diff_html(base: Profile, new: Profile) -> str:
    """A differential flame graph: `new`'s call tree (or, at a click, `base`'s), each frame coloured by how
    its share of the samples changed from `base` (red: grew, blue: shrank)."""
    name = new.name if new.name == base.name else f"{base.name} -> {new.name}"
    summary = f"base: {summary_line(base)}; new: {summary_line(new)}"
    return _page(name, summary, _flat_tree(new.call_tree(), "all", base.call_tree()))


def _page(name: str, summary: str, tree: dict[str, Any]) -> str:
    template = resources.files(__package__).joinpath("flamegraph.html").read_text(encoding="utf-8")
    # Inside <script>, "<" must not start a tag: JSON allows it escaped.
    payload = json.dumps({"name": name, "summary": summary, "tree": tree}, ensure_ascii=False).replace(
        "<", "\\u003c"
    )
    return template.replace("__TITLE__", html.escape(name)).replace("__DATA__", payload)
