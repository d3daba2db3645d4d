"""A self-contained HTML flame graph (icicle, click to zoom, search): no network needed to view it."""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any

from wasmtime_gp.profile import CallNode, Profile
from wasmtime_gp.report import summary_line


def _tree(node: CallNode, name: str) -> dict[str, Any]:
    frame = node.frame
    return {
        "n": frame.function if frame else name,
        "m": frame.module if frame else "",
        "v": node.total,
        "s": node.self,
        "c": [_tree(child, name) for child in node.sorted_children()],
    }


def to_html(profile: Profile) -> str:
    template = resources.files(__package__).joinpath("flamegraph.html").read_text(encoding="utf-8")
    data = {"name": profile.name, "summary": summary_line(profile), "tree": _tree(profile.call_tree(), "all")}
    # Inside <script>, "<" must not start a tag: JSON allows it escaped.
    payload = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c")
    return template.replace("__TITLE__", html.escape(profile.name)).replace("__DATA__", payload)
