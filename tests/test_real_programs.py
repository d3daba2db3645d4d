"""The command line on real C programs compiled to wasm32-wasi: zlib's minigzip and SQLite's speedtest1."""

from __future__ import annotations

import gzip
import random

import tools
from test_cli import wasmtime_gp

from wasmtime_gp import Profile


def test_minigzip_compresses_under_the_profiler(tmp_path):
    minigzip = tools.wasm_program("minigzip")
    data = random.Random(1).randbytes(3_000_000).hex().encode()
    (tmp_path / "input.txt").write_bytes(data)
    out = tmp_path / "minigzip.json"
    result = wasmtime_gp("run", str(minigzip), "--dir", f"{tmp_path}::/data", "--interval", "200us", "-o", str(out),
                         "--", "/data/input.txt")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert gzip.decompress((tmp_path / "input.txt.gz").read_bytes()) == data  # the guest really worked

    profile = Profile.load(out)
    assert profile.name == "minigzip" and profile.sample_count > 50
    hot = {row.frame.function for row in profile.top(30, by="total")}
    assert {"main", "gz_compress", "deflate"} <= hot
    report = wasmtime_gp("report", str(out), "--tree")
    assert report.returncode == 0 and "longest_match" in report.stdout


def test_speedtest1_runs_with_arguments_and_converts(tmp_path):
    speedtest1 = tools.wasm_program("speedtest1")
    out = tmp_path / "speedtest1.json"
    result = wasmtime_gp("run", str(speedtest1), "-o", str(out), "--", "--memdb", "--size", "5")
    assert result.returncode == 0, result.stderr
    profile = Profile.load(out)
    assert any(row.frame.function == "sqlite3VdbeExec" for row in profile.top(20, by="total"))
    html = tmp_path / "speedtest1.html"
    assert wasmtime_gp("convert", str(out), "--to", "html", "-o", str(html)).returncode == 0
    assert "sqlite3VdbeExec" in html.read_text()
