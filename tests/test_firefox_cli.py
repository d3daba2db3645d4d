"""The Firefox Profiler as a consumer: its own loader and call tree, through its profiler-cli (npm), read every
kind of Firefox JSON we write and count the same samples per function as `Profile` does."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tools
from conftest import instantiate
from guests import CHAIN
from test_host_calls import App
from test_outside_wasm import WaitingGuest, spins_taking
from test_source_lines import LINE, SOURCE, compile_c, profile_program

from wasmtime_gp import ContinuousProfiler, GuestProfiler, Profile
from wasmtime_gp.merge import merge_profiles
from wasmtime_gp.profile import HOST_MODULE, OFF_CPU, OUTSIDE_WASM, CallNode, Frame

DATA = Path(__file__).parent / "data"
TIMEOUT = 60  # seconds for one command of the CLI (loading a profile included), and for its daemon to stop


class FirefoxCli:
    """profiler-cli sessions kept in a directory of their own; `close()` stops every daemon they started.

    `profiler-cli load` starts a daemon (detached, in a session of its own) that loads the profile with the
    Firefox Profiler's code and answers the later commands over a Unix socket in that directory.
    """

    def __init__(self) -> None:
        self.executable = tools.node_command("@firefox-devtools/profiler-cli", "profiler-cli")
        # Short: the socket path (at most 108 bytes) is this directory plus the session id.
        self.directory = Path(tempfile.mkdtemp(prefix="fxcli-"))
        self.env = {
            **os.environ,
            "PROFILER_CLI_SESSION_DIR": str(self.directory),
            # Our profiles say `symbolicated: false`: the daemon would ask Mozilla's symbol server.
            "PROFILER_CLI_NO_SYMBOLICATE": "1",
            "PROFILER_CLI_LOAD_TIMEOUT_MS": str(TIMEOUT * 1000),
        }
        self.daemons: dict[str, int | None] = {}  # session id -> its daemon's pid, once known

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.executable), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=TIMEOUT,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(f"profiler-cli {' '.join(args)} failed: {result.stderr}{result.stdout}")
        return result

    def load(self, path: Path) -> Session:
        session = f"s{len(self.daemons)}"
        self.daemons[session] = None
        result = self.run("load", str(path), "--session", session, check=False)
        if result.returncode != 0:
            # `load` gives the daemon 500 ms to start listening; on a busy machine it reports the
            # daemon "still starting" and leaves it to go on, so it is waited for below like any other.
            assert "still starting" in result.stderr, result.stderr
            reported = re.search(r"running as pid (\d+)", result.stderr)
            self.daemons[session] = int(reported.group(1)) if reported else None
        deadline = time.monotonic() + TIMEOUT
        while True:
            status = self.run("status", "--session", session, check=False)
            if status.returncode == 0:
                break
            assert "Profile load failed" not in status.stderr, status.stderr
            assert time.monotonic() < deadline, f"{path} did not load: {status.stderr}"
            time.sleep(0.2)
        metadata = json.loads((self.directory / f"{session}.json").read_text())
        self.daemons[session] = int(metadata["pid"])
        return Session(self, session)

    def close(self) -> None:
        left_running = []
        for session, pid in self.daemons.items():
            metadata = self.directory / f"{session}.json"  # the daemon writes it once it listens
            if pid is None and metadata.is_file():
                pid = int(json.loads(metadata.read_text())["pid"])
            try:
                self.run("stop", "--session", session, check=False)
            except subprocess.TimeoutExpired:
                pass  # the daemon is killed below
            if pid is not None and not self._exits(pid, session):
                os.kill(pid, signal.SIGKILL)
                left_running.append(session)
        shutil.rmtree(self.directory, ignore_errors=True)
        assert not left_running, f"profiler-cli daemons did not stop and were killed: {left_running}"

    def _exits(self, pid: int, session: str) -> bool:
        deadline = time.monotonic() + TIMEOUT
        while self._daemon_running(pid, session):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _daemon_running(self, pid: int, session: str) -> bool:
        """Whether `pid` is still our daemon of `session` (not a zombie nobody reaped, nor a reused pid)."""
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
            return False
        ours = f"PROFILER_CLI_SESSION_DIR={self.directory}".encode() in environment
        return ours and b"--daemon" in args and session.encode() in args and state != "Z"


class Session:
    """One loaded profile: the CLI's answers, as JSON."""

    def __init__(self, cli: FirefoxCli, session: str):
        self.cli = cli
        self.session = session

    def json(self, *args: str) -> Any:
        return json.loads(self.cli.run(*args, "--session", self.session, "--json").stdout)

    def threads(self) -> list[dict[str, Any]]:
        return list(self.json("thread", "list", "--sort", "index")["threads"])

    def functions(self, thread: str) -> list[dict[str, Any]]:
        return list(self.json("thread", "functions", "--thread", thread, "--limit", "0")["functions"])


@pytest.fixture
def firefox() -> Iterator[FirefoxCli]:
    cli = FirefoxCli()
    try:
        yield cli
    finally:
        cli.close()


def shown_as(frame: Frame) -> str:
    """How the profiler names a function: `resource!function`, or the function alone when they are alike."""
    return frame.function if frame.module in ("", frame.function) else f"{frame.module}!{frame.function}"


def with_stacks(profile: Profile) -> int:
    """Samples with a stack (Wasmtime may take one before the first frame is entered)."""
    return sum(1 for sample in profile.samples if sample.stack)


def check_threads(session: Session, profile: Profile) -> dict[str, dict[str, dict[str, Any]]]:
    """Assert that each thread's function list has Profile's functions with their self and total samples, and
    its CPU time; return the rows of each thread by name, keyed by the function as the CLI shows it."""
    threads = session.threads()
    named = {sample.thread for sample in profile.samples} != {""}
    assert len(threads) == (len({sample.thread for sample in profile.samples}) if named else 1)
    rows = {}
    for thread in threads:
        samples = [s for s in profile.samples if not named or s.thread == thread["name"]]
        ours = Profile(profile.name, profile.interval, profile.start_time, profile.duration, samples)
        expected = sorted((shown_as(r.frame), r.self_samples, r.total_samples) for r in ours.top(sys.maxsize))
        listed = session.functions(thread["threadHandle"])
        assert sorted((r["nameWithLibrary"], r["selfSamples"], r["totalSamples"]) for r in listed) == expected
        # The profiler counts no CPU time for a thread's first sample: nothing came before it.
        assert thread["cpuMs"] == pytest.approx(1000 * sum(s.cpu_delta for s in samples[1:]), abs=0.01)
        rows[thread["name"]] = {row["nameWithLibrary"]: row for row in listed}
    return rows


def test_a_plain_profile(firefox, tmp_path, spins_for):
    guest = instantiate(CHAIN)
    with GuestProfiler(guest.store, [guest.module], interval=0.0005) as profiler:
        guest.call("run", spins_for(0.1))
    path = profiler.save(tmp_path / "chain.json")
    profile = Profile.load(path)

    (rows,) = check_threads(firefox.load(path), profile).values()
    # A loaded machine may add a rare `[outside wasm]` sample (under 1 %, test_outside_wasm): wasm's are these.
    assert {name for name in rows if not name.startswith(f"{HOST_MODULE}!")} == {
        "chain!outer",
        "chain!middle",
        "chain!inner",
    }
    assert rows["chain!outer"]["totalSamples"] == with_stacks(profile) > 0
    assert max(rows.values(), key=lambda row: row["selfSamples"])["name"] == "inner"


def test_host_frames_and_their_markers(firefox, tmp_path, spins_for):
    app = App(slow_seconds=0.004)
    with app.profiler() as profiler:
        app("work", 10, spins_for(0.002))
        app("reenter", spins_for(0.01))
    path = profiler.save(tmp_path / "app.json")
    profile = Profile.load(path)

    session = firefox.load(path)
    (rows,) = check_threads(session, profile).values()
    slow = rows["host![host] env.slow"]  # the resource, then the function: readable
    assert slow["name"] == "[host] env.slow" and slow["library"] == HOST_MODULE
    assert slow["selfSamples"] > 0
    assert {"app!reenter", f"{HOST_MODULE}![host] env.call_back", "app!inner"} <= set(rows)

    raw = json.loads(path.read_bytes())
    (thread,) = raw["threads"]
    strings = thread["stringArray"] if "stringArray" in thread else raw["shared"]["stringArray"]
    calls: dict[str, int] = {}
    for name in thread["markers"]["name"]:
        calls[strings[name]] = calls.get(strings[name], 0) + 1
    markers = session.json("thread", "markers", "--thread", "t-0", "--limit", "0")
    assert {group["markerName"]: group["count"] for group in markers["byType"]} == calls
    slow_markers = next(group for group in markers["byType"] if group["markerName"] == "[host] env.slow")
    assert {marker["label"] for marker in slow_markers["topMarkers"]} == {"env.slow"}  # our schema's label


def test_time_outside_wasm_and_its_markers(firefox, tmp_path):
    guest = WaitingGuest(0.003, sleeps=True)
    profiler, _ = guest.run(calls=20, spins=spins_taking(0.001))
    path = profiler.save(tmp_path / "io.json")

    session = firefox.load(path)
    (rows,) = check_threads(session, Profile.load(path)).values()
    outside, off_cpu = rows[f"{HOST_MODULE}!{OUTSIDE_WASM}"], rows[f"{HOST_MODULE}!{OFF_CPU}"]
    assert outside["selfSamples"] == 0 and outside["totalSamples"] >= off_cpu["selfSamples"] > 0
    markers = session.json("thread", "markers", "--thread", "t-0", "--limit", "0")
    stretches = next(group for group in markers["byType"] if group["markerName"] == OUTSIDE_WASM)
    assert stretches["count"] == sum(
        1
        for marker in json.loads(path.read_bytes())["threads"][0]["markers"]["data"]
        if isinstance(marker, dict) and marker.get("type") == "OutsideWasm"
    )


def test_a_merge_with_time_outside_wasm(firefox, tmp_path, spins_for):
    guest = instantiate(CHAIN)
    with GuestProfiler(guest.store, [guest.module], interval=0.0005) as plain:
        guest.call("run", spins_for(0.02))
    waiting, _ = WaitingGuest(0.003, sleeps=True).run(calls=10, spins=spins_taking(0.001))
    path = tmp_path / "merged.json"
    path.write_bytes(merge_profiles([plain.finish(), waiting.finish()], names=["plain", "io"]))
    rows = check_threads(firefox.load(path), Profile.load(path))
    assert rows["io"][f"{HOST_MODULE}!{OFF_CPU}"]["selfSamples"] > 0


def _flatten(node: CallNode, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], tuple[int, int]]:
    flat = {}
    for child in node.children.values():
        assert child.frame is not None
        key = (*path, shown_as(child.frame))
        flat[key] = (child.total, child.self)
        flat.update(_flatten(child, key))
    return flat


def _flatten_cli(node: dict[str, Any], path: tuple[str, ...] = ()) -> dict[tuple[str, ...], tuple[int, int]]:
    flat = {}
    for child in node.get("children", []):
        key = (*path, child["nameWithLibrary"])
        flat[key] = (child["totalSamples"], child["selfSamples"])
        flat.update(_flatten_cli(child, key))
    return flat


def test_source_lines_and_inline_frames(firefox, tmp_path):
    wasm = compile_c(tmp_path, "hot_lines", "-g")
    path = profile_program(wasm).save(tmp_path / "hot_lines.json")
    profile = Profile.load(path)
    assert profile.has_lines

    session = firefox.load(path)
    (rows,) = check_threads(session, profile).values()
    assert {"hot_lines!main", "hot_lines!hot", "hot_lines!scramble", "hot_lines!cold"} <= set(rows)

    # The call tree: the same nodes with the same samples, and `scramble` known as inlined into `hot`.
    tree = session.json("thread", "samples-top-down", "--thread", "t-0", "--max-lines", "100000")
    assert _flatten_cli(tree["regularCallTree"]) == _flatten(profile.call_tree())
    nodes = [tree["regularCallTree"]]
    inlined = set()
    while nodes:
        node = nodes.pop()
        nodes += node.get("children", [])
        if node.get("inlineStatus") == "inlined":
            inlined.add(node["name"])
    assert "scramble" in inlined

    # Line by line, in the profiler's source view of `hot`: the samples of every line of the file.
    hot = rows["hot_lines!hot"]["functionHandle"]
    annotated = session.json("function", "annotate", hot, "--mode", "src", "--context", "file")
    assert annotated["srcAnnotation"]["filename"] == str(SOURCE)
    shown = {
        line["lineNumber"]: (line["selfSamples"], line["totalSamples"])
        for line in annotated["srcAnnotation"]["lines"]
        if line["totalSamples"]
    }
    ours = {row.line: (row.self_samples, row.total_samples) for row in profile.top_lines(sys.maxsize)
            if row.file == str(SOURCE)}  # fmt: skip
    assert shown == ours
    assert shown[LINE["HOT-LOOP"]][0] > shown[LINE["COLD-LOOP"]][0] > 0
    assert shown[LINE["INLINE-CALL"]] == (0, shown[LINE["INLINED-LOOP"]][1])


def test_a_merge_of_two_stores(firefox, tmp_path, spins_for):
    inputs = []
    for name in ("checkout", "search"):
        guest = instantiate(CHAIN)
        with GuestProfiler(guest.store, [(name, guest.module)], interval=0.0005) as profiler:
            guest.call("run", spins_for(0.05))
        inputs.append(profiler.finish())
    path = tmp_path / "merged.json"
    path.write_bytes(merge_profiles(inputs, names=["checkout", "search"]))
    profile = Profile.load(path)

    rows = check_threads(firefox.load(path), profile)
    assert set(rows) == {"checkout", "search"}
    for name, single in zip(("checkout", "search"), map(Profile.from_bytes, inputs)):
        assert rows[name][f"{name}!outer"]["totalSamples"] == with_stacks(single) > 0


def test_rotated_slices_with_labels(firefox, tmp_path, spins_for):
    guest = instantiate(CHAIN)
    continuous = ContinuousProfiler(
        guest.store, [("svc", guest.module)], sink=tmp_path, interval=0.0005, period=3600,
        labels={"tenant": "acme"},
    )  # fmt: skip
    with continuous:
        for _ in range(2):
            guest.call("run", spins_for(0.03))
            continuous.rotate()
        guest.call("run", spins_for(0.03))
    paths = sorted(tmp_path.iterdir())
    assert len(paths) == 3
    slices = [Profile.load(path) for path in paths]
    assert sum(profile.sample_count for profile in slices) == continuous.profiler.sample_count
    for path, profile in zip(paths, slices):
        assert profile.labels == {"tenant": "acme"}
        (rows,) = check_threads(firefox.load(path), profile).values()
        assert rows["svc!outer"]["totalSamples"] == with_stacks(profile) > 0


@pytest.mark.parametrize("path", sorted(DATA.glob("chain-wasmtime*.json")), ids=lambda path: path.stem)
def test_profiles_written_by_wasmtime(firefox, path):
    profile = Profile.load(path)
    (rows,) = check_threads(firefox.load(path), profile).values()
    (inner,) = (row for row in rows.values() if row["name"] == "inner")
    assert inner["selfSamples"] == profile.top(1)[0].self_samples > 0
