"""A self-contained HTML flame graph (icicle, click to zoom, search): no network needed to view it."""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any

from wasmtime_gp.profile import CallNode, Profile
from wasmtime_gp.report import summary_line


def _flat_tree(root: CallNode, name: str) -> dict[str, Any]:
    """The call tree as flat columns in depth-first order, each node naming its parent: no nesting, so neither
    this JSON nor the page's reading of it goes deeper with the stacks."""
    strings: dict[str, int] = {}
    columns: dict[str, list[int]] = {"n": [], "m": [], "v": [], "s": [], "p": []}
    pending: list[tuple[CallNode, int]] = [(root, -1)]
    while pending:
        node, parent = pending.pop()
        index = len(columns["p"])
        frame = node.frame
        columns["n"].append(strings.setdefault(frame.function if frame else name, len(strings)))
        columns["m"].append(strings.setdefault(frame.module if frame else "", len(strings)))
        columns["v"].append(node.total)
        columns["s"].append(node.self)
        columns["p"].append(parent)
        pending.extend((child, index) for child in reversed(node.sorted_children()))
    return {"strings": list(strings), **columns}


def to_html(profile: Profile) -> str:
    template = resources.files(__package__).joinpath("flamegraph.html").read_text(encoding="utf-8")
    data = {
        "name": profile.name,
        "summary": summary_line(profile),
        "tree": _flat_tree(profile.call_tree(), "all"),
    }
    # Inside <script>, "<" must not start a tag: JSON allows it escaped.
    payload = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c")
    return template.replace("__TITLE__", html.escape(profile.name)).replace("__DATA__", payload)
