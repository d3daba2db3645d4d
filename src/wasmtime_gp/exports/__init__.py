"""Exports of a Profile to the formats other tools read. Samples without guest frames are left out."""

from __future__ import annotations

from collections.abc import Callable

from wasmtime_gp.exports.collapsed import to_collapsed
from wasmtime_gp.exports.html import to_diff_html, to_html
from wasmtime_gp.exports.pprof import to_pprof
from wasmtime_gp.exports.speedscope import to_speedscope
from wasmtime_gp.profile import Profile

# Each format's writer, returning the file's bytes.
FORMATS: dict[str, Callable[[Profile], bytes]] = {
    "collapsed": lambda profile: to_collapsed(profile).encode(),
    "speedscope": lambda profile: to_speedscope(profile).encode(),
    "pprof": to_pprof,
    "html": lambda profile: to_html(profile).encode(),
}

__all__ = ["FORMATS", "to_collapsed", "to_diff_html", "to_html", "to_pprof", "to_speedscope"]
