"""Comparing profiles (wasmtime_gp.diff, `wasmtime-gp diff`): zlib's minigzip at two compression levels, and
`go tool pprof -diff_base` reading what `--to pprof` writes."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tools
from test_endpoint import go_pprof
from test_exports import _chromium_dom

from wasmtime_gp import Profile
from wasmtime_gp.cli import main
from wasmtime_gp.diff import against_bases, regressions, relative_growth, two_proportion_p_value
from wasmtime_gp.exports import to_diff_html
from wasmtime_gp.profile import Sample

# Enough text that minigzip runs for about a second at -6 (a few thousand samples at 200 us).
TEXT = b"".join(b"diff sample %d tick %d words of text\n" % (k, k * 7919 % 1000) for k in range(200_000))


def _profile(directory: Path, level: int) -> Path:
    """`wasmtime-gp run` on minigzip compressing TEXT at `level` (zlib: 1-3 deflate_fast, 4-9 deflate_slow)."""
    if not (directory / "input.txt").exists():
        (directory / "input.txt").write_bytes(TEXT)
    out = directory / f"level{level}.json"
    command = [sys.executable, "-m", "wasmtime_gp", "run", str(tools.wasm_program("minigzip")), "-o", str(out),
               "--interval", "200us", "--dir", f"{directory}::/data", "--", "-c", f"-{level}", "/data/input.txt"]  # fmt: skip
    done = subprocess.run(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return out


@pytest.fixture(scope="module")
def levels(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("levels")
    return _profile(directory, 1), _profile(directory, 9)


def test_the_p_value_is_the_two_proportion_z_tests():
    assert two_proportion_p_value(50, 100, 50, 100) == 1.0
    assert two_proportion_p_value(0, 100, 0, 200) == 1.0  # in no sample of either
    assert two_proportion_p_value(100, 100, 200, 200) == 1.0  # in every sample of both
    assert two_proportion_p_value(5, 0, 5, 10) == 1.0  # an empty profile says nothing
    # 1 % against 3 % of 1,000 samples each: pooled 2 %, z = 0.02 / sqrt(0.02 * 0.98 * 2 / 1000) = 3.194.
    assert two_proportion_p_value(10, 1000, 30, 1000) == pytest.approx(
        math.erfc(3.1944 / math.sqrt(2)), rel=1e-3
    )
    assert two_proportion_p_value(30, 1000, 10, 1000) == two_proportion_p_value(10, 1000, 30, 1000)


def test_growth_is_against_the_rest_so_one_function_slower_by_a_fifth_grows_by_a_fifth():
    # 40 of 100 samples; 20 % slower alone: 48 of 108, i.e. 48 against 60 where there were 40 against 60.
    assert relative_growth(40, 100, 48, 108) == pytest.approx(0.2)
    assert relative_growth(40, 100, 4800, 10800) == pytest.approx(0.2)  # whatever the sample counts
    assert relative_growth(0, 100, 0, 100) == 0.0
    assert relative_growth(10, 100, 0, 100) == -1.0
    assert relative_growth(0, 100, 5, 100) == math.inf
    assert relative_growth(100, 100, 100, 100) == 0.0  # no rest in either: nothing to grow against
    assert relative_growth(90, 100, 100, 100) == math.inf


def test_a_regression_must_leave_the_range_of_every_base_by_more_than_their_spread(levels):
    fast, slow = (Profile.load(path) for path in levels)
    found = regressions([fast], slow, max_growth=0.1, min_percent=1, by="total")
    names = [row.change.frame.function for row in found]
    assert "longest_match" in names, names
    assert [row.change.growth for row in found] == sorted((row.change.growth for row in found), reverse=True)
    for row in found:
        assert row.change.significant and row.change.growth > 0.1 and 1 <= row.change.new_percent <= 99
        assert row.base_spread == 0.0 and row.beyond == row.change.growth  # one base
    # A function at 100 % has no rest to grow against; a base like the new one leaves nothing to report.
    assert "main" not in names
    assert regressions([fast, slow], slow, max_growth=0.1, min_percent=1) == []
    assert regressions([slow], slow, max_growth=0.0) == []
    # Two bases: each function's growth from the nearer one, and it must also exceed how far apart they are.
    halves = [fast.with_samples(fast.samples[::2]), fast.with_samples(fast.samples[1::2])]
    both = {row.change.frame: row for row in regressions(halves, slow, 0.1, min_percent=1, by="total")}
    one = {row.change.frame: row for row in found}
    assert both and set(both) <= set(one)
    for frame, row in both.items():
        assert row.change.growth <= one[frame].change.growth * 1.5
        assert (
            row.beyond == pytest.approx((1 + row.change.growth) / (1 + row.base_spread) - 1)
            and row.beyond > 0.1
        )

    # A function that one base run lacks still regresses where it grew far beyond them: here one base has 5
    # samples of longest_match, the other none, and level 9 spends most of its time there.
    def matching(sample: Sample) -> bool:
        return any(frame.function == "longest_match" for frame in sample.stack)

    without = [s for s in fast.samples if not matching(s)]
    bases = [
        fast.with_samples(without + [s for s in fast.samples if matching(s)][:5]),
        fast.with_samples(without),
    ]
    lacking = {row.change.frame.function: row for row in regressions(bases, slow, 0.1, 1, "total")}
    assert "longest_match" in lacking, lacking
    assert 5 < lacking["longest_match"].base_spread < 20, lacking  # (5.5 / rest) / (0.5 / rest): finite
    # against_bases weighs every function in range, significant or not, the largest beyond first.
    weighed = against_bases([fast], slow, min_percent=1)
    assert {row.change.frame for row in found} <= {row.change.frame for row in weighed}
    assert [row.beyond for row in weighed] == sorted((row.beyond for row in weighed), reverse=True)
    with pytest.raises(ValueError, match="at least one base"):
        regressions([], slow, 0.1)


def test_a_higher_compression_level_moves_the_time_to_deflate_slow(levels):
    fast, slow = (Profile.load(path) for path in levels)
    diff = slow.diff(fast)
    rows = {row.frame.function: row for row in diff.changes}
    assert diff.base_samples == fast.sample_count and diff.new_samples == slow.sample_count
    # zlib: levels 1-3 compress with deflate_fast, 4-9 with deflate_slow, whose longest_match does the work.
    assert rows["deflate_fast"].new_samples == 0 and rows["deflate_fast"].change < -1
    grown = {row.frame.function for row in diff.grown(points=20)}
    assert "longest_match" in grown, diff.changes[:6]
    assert all(row.change > 0 for row in diff.grown())
    # Sorted by the size of the change; shares are of each profile's own samples.
    assert [abs(row.change) for row in diff.changes] == sorted(
        (abs(row.change) for row in diff.changes), reverse=True
    )
    assert rows["deflate_fast"].base_percent == pytest.approx(
        100 * rows["deflate_fast"].base_samples / fast.sample_count
    )
    total = slow.diff(fast, by="total")
    main_row = next(row for row in total.changes if row.frame.function == "main")
    assert main_row.base_percent > 90 and main_row.new_percent > 90 and not main_row.significant


def test_a_profile_against_itself_changes_nothing(levels):
    profile = Profile.load(levels[0])
    diff = profile.diff(profile)
    assert diff.changes and not any(row.significant or row.change for row in diff.changes)
    with pytest.raises(ValueError, match="by must be"):
        profile.diff(profile, by="inner")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alpha"):
        profile.diff(profile, alpha=1.5)


def test_the_command_prints_the_changes_and_writes_pprof_for_go_tool_pprof(levels, tmp_path, capsys):
    fast, slow = levels
    assert main(["diff", str(fast), str(slow), "--to", "pprof", "-o", str(tmp_path / "pprof")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("base ") and "two-proportion z-test" in lines[0]
    changes = {line.split()[-2]: line.split() for line in lines[3:] if line.strip()}
    assert changes["longest_match"][0] == "*" and float(changes["longest_match"][1]) > 0, out
    assert float(changes["deflate_fast"][-7]) < 0, out  # the change column, marked or not
    base, new = tmp_path / "pprof" / "base.pb.gz", tmp_path / "pprof" / "new.pb.gz"
    assert f"go tool pprof -diff_base {base} {new}" in out
    # The real tool: what level 1 spent in deflate_fast comes out negative, level 9's new time positive.
    top = go_pprof(tmp_path, "-top", "-diff_base", str(base), str(new))
    flat = {
        line.split()[-1]: line.split()[0]
        for line in top.splitlines()
        if line.strip().endswith(("deflate_fast", "longest_match"))
    }
    assert flat["deflate_fast"].startswith("-"), top
    assert not flat["longest_match"].startswith("-"), top


def test_the_differential_flame_graph_colours_what_grew_and_works_offline(levels, tmp_path, capsys):
    fast, slow = levels
    page = tmp_path / "diff.html"
    assert main(["diff", str(fast), str(slow), "--html", str(page)]) == 0
    assert f"wrote {page}" in capsys.readouterr().out
    text = page.read_text()
    for needle in ("src=", "href=", "@import", "url(", "http://", "https://"):
        assert needle not in text, needle
    assert text == to_diff_html(Profile.load(fast), Profile.load(slow))
    # The real page in a browser: new's tree, longest_match red (a larger share), deflate_fast only in base.
    dom = _chromium_dom(page.as_uri(), budget_ms=3000)
    assert '<body class="diff">' in dom
    colours = {
        name: tuple(map(int, rgb))
        for *rgb, name in re.findall(r'background: rgb\((\d+), (\d+), (\d+)\);">([^<]+)<', dom)
    }
    red, green, blue = colours["longest_match"]
    assert red > green + 50 and red > blue + 50, colours
    assert len(set(colours["_start"])) == 1, colours  # grey: unchanged (every sample, in both)
    assert "deflate_fast" not in colours  # no samples in the new profile: drawn only with base's widths


def test_the_command_refuses_what_it_cannot_do(levels, tmp_path, capsys):
    fast, slow = levels
    assert main(["diff", str(fast), str(slow), "--to", "pprof"]) == 2
    assert "--to and --output go together" in capsys.readouterr().err
    assert main(["diff", str(fast), str(slow), "--alpha", "0"]) == 2
    assert main(["diff", str(fast), str(tmp_path / "missing.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["diff", str(fast), str(slow), "--html", str(tmp_path / "no" / "diff.html")]) == 2
    out, err = capsys.readouterr()
    assert not out and "is not a directory" in err
