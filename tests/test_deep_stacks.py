"""Deep stacks, as interpreters compiled to wasm have them: real profiles 10,000 and 100,000 frames deep.

Every reader, report, export and CLI command must work on them with memory linear in the profile (stacks share
their prefixes in the file, and must in memory too) and with no recursion over the depth. The heavy work runs in
subprocesses with timeouts, so a blowup fails a test instead of the run; nothing here asserts a time.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tools
from conftest import run_isolated
from guests import DEEP

from wasmtime_gp import cli
from wasmtime_gp.exports import FORMATS

# Readers and exports do not depend on the Python or Wasmtime version (the compatibility cells skip them), and
# writing a 100,000-deep profile needs Wasmtime's async stack size raised, which 19 and 39 do not take the same way.
pytestmark = pytest.mark.slow

DEPTHS = [10_000, 100_000]


# Profiles DEEP in a thread with a big native stack (wasm frames live there): a frame of this guest takes 32
# bytes, so 100,000 need more than Wasmtime's default 2 MiB, which its C API caps at the async stack size.
WRITE_PROFILE = """
import ctypes, sys, threading, wasmtime
from wasmtime_gp import GuestProfiler

guest, depth, path = {guest!r}, {depth}, {path!r}
config = wasmtime.Config()
config.epoch_interruption = True
try:
    set_async_stack = wasmtime._ffi.dll.wasmtime_config_async_stack_size_set
    set_async_stack.argtypes, set_async_stack.restype = [ctypes.c_void_p, ctypes.c_size_t], None
    set_async_stack(ctypes.cast(config.ptr(), ctypes.c_void_p), 16 << 20)
except AttributeError:
    pass  # a Wasmtime without async support does not cap max_wasm_stack
config.max_wasm_stack = 16 << 20
engine = wasmtime.Engine(config)
store = wasmtime.Store(engine)
module = wasmtime.Module(engine, guest)
run = wasmtime.Instance(store, module, []).exports(store)["run"]
threading.stack_size(64 << 20)

def profile():
    # Wasmtime walks about 10,000 frames a millisecond: a long interval and a few samples.
    with GuestProfiler(store, [module], interval=0.05) as profiler:
        run(store, depth, 500_000_000)  # about 0.5 s here
    profiler.save(path)

thread = threading.Thread(target=profile)
thread.start()
thread.join()
"""

# Everything a user may do with a profile, in one process: prints what the test checks, and the growth of the
# peak RSS over the RSS after the imports.
USE_PROFILE = """
import gzip, json, re, resource, sys
from wasmtime_gp import Profile, report
from wasmtime_gp.exports import FORMATS
from wasmtime_gp.exports.pprof import _profile_class
from wasmtime_gp.merge import merge_profiles

path = {path!r}
with open("/proc/self/statm") as statm:
    virtual, before = (int(pages) * resource.getpagesize() for pages in statm.read().split()[:2])
# A quadratic blowup fails fast with MemoryError instead of filling the machine.
resource.setrlimit(resource.RLIMIT_AS, (virtual + (2 << 30), resource.RLIM_INFINITY))
data = open(path, "rb").read()
profile = Profile.from_bytes(data)
out = {{"samples": profile.sample_count}}
deepest = max(profile.samples, key=lambda sample: sample.depth)
stack = deepest.stack
out["depth"] = [len(stack), deepest.depth]
out["outer_inner"] = [stack[0].function, stack[1].function, stack[-2].function, stack[-1].function]
out["self_top"] = [(row.frame.function, row.self_samples, row.total_samples) for row in profile.top(3)]
out["total_top"] = [(row.frame.function, row.total_samples) for row in profile.top(4, by="total")]
node, levels = profile.call_tree(), 0
out["root"] = node.total
while node.children:
    (node,) = node.children.values()
    levels += 1
out["tree"] = [levels, node.frame.function, node.self]
del node  # each step lets go of what it made: the peak is that of the largest, as for a user
text = report.render(profile, tree=True)
out["report_lines"] = len(text.splitlines())
out["report_has"] = ["spin [deep]" in text, "└─ ..." in text]
del text
collapsed = FORMATS["collapsed"](profile).decode().splitlines()
out["collapsed"] = sorted(len(line.rsplit(" ", 1)[0].split(";")) for line in collapsed)
del collapsed
def events(text):  # (kind, frame) of each speedscope event, read without a dict per event
    return [(kind, int(frame)) for kind, frame in re.findall(r'"type":"([OC])","frame":(\\d+)', text)]

speedscope = FORMATS["speedscope"](profile).decode()
opened = []
for kind, frame in events(speedscope):
    if kind == "O":
        opened.append(frame)
    else:
        assert opened.pop() == frame
names = sorted(frame["name"] for frame in json.loads(speedscope.split(', "profiles": ')[0] + "}}")["shared"]["frames"])
out["speedscope"] = [len(opened), names]
del speedscope
message = _profile_class()()
message.ParseFromString(gzip.decompress(FORMATS["pprof"](profile)))
out["pprof"] = [sum(sample.value[0] for sample in message.sample), max(len(s.location_id) for s in message.sample)]
del message
page = FORMATS["html"](profile).decode()
tree = json.loads(page.split('type="application/json">', 1)[1].split("</script>", 1)[0])["tree"]
out["html_nodes"] = len(tree["p"])
del page, tree
out["guest_only"] = profile.filter_host("exclude").top(1)[0].frame.function
merged = Profile.from_bytes(merge_profiles([data, data], ["a", "b"]))
out["merged"] = [merged.sample_count, merged.top(1)[0].total_samples, len(merged.stack_counts())]
merged_speedscope = FORMATS["speedscope"](merged).decode().split('"type": "evented"')[1:]
out["merged_events"] = [len(events(thread)) for thread in merged_speedscope]
del merged, merged_speedscope
out["rss_growth"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
print(json.dumps(out))
"""


@pytest.fixture(scope="module", params=DEPTHS, ids=[f"depth{depth}" for depth in DEPTHS])
def deep(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    depth: int = request.param
    path = tmp_path_factory.mktemp("deep") / f"deep{depth}.json"
    done = run_isolated(WRITE_PROFILE.format(guest=DEEP, depth=depth, path=str(path)), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return depth, path


def _memory_bound(path: Path, depth: int) -> int:
    """Peak RSS growth allowed for reading and using a profile: linear in its size and in its depth (the
    quadratic reader took 473 MiB for a 10,000-deep profile of 85 KB). The depth's share: a loaded machine
    leaves a 10,000-deep profile few samples (70 KB), and using it still grew the RSS by 85 MiB."""
    return 128 * path.stat().st_size + 4096 * depth + (64 << 20)


def test_every_reader_report_and_export_works_at_depth(deep):
    depth, path = deep
    done = run_isolated(USE_PROFILE.format(path=str(path)), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])
    samples, frames = out["samples"], depth + 2  # main, then `depth` of eval and apply, then spin
    assert samples >= 2
    assert out["depth"] == [frames, frames]
    assert out["outer_inner"] == ["main", "eval", "eval" if depth % 2 else "apply", "spin"]
    spin, *_ = out["self_top"]
    assert spin[0] == "spin" and spin[1] >= samples - 2  # a sample or two may land on the way down
    # Recursion counts once per sample: eval is on every stack, not `depth / 2` times on each.
    totals = dict(out["total_top"])
    assert totals["main"] == totals["eval"] == samples and totals["apply"] <= samples
    assert out["root"] == samples
    assert out["tree"][0] == frames and out["tree"][1] == "spin" and out["tree"][2] == spin[1]
    assert out["report_has"] == [True, True] and out["report_lines"] < 80  # the tree stops at 40 levels
    assert out["collapsed"][-1] == frames
    assert out["speedscope"] == [0, ["apply", "eval", "main", "spin"]]
    assert out["pprof"] == [samples, frames]
    assert out["html_nodes"] == frames + 1  # the root, "all", and one node per level of the one chain
    assert out["guest_only"] == "spin"
    assert out["merged"][0] == 2 * samples and out["merged"][1] == 2 * samples
    # A profile per thread, whose equal consecutive stacks cost nothing: each opens and closes its stack once.
    assert out["merged_events"] == [out["merged_events"][0]] * 2 and out["merged_events"][0] < 4 * frames
    print(f"peak RSS growth {out['rss_growth'] / 2**20:.1f} MiB for {path.stat().st_size / 2**10:.0f} KiB")
    assert out["rss_growth"] < _memory_bound(path, depth), out["rss_growth"]


def _run_measured(args: list[str], timeout: float = 600) -> tuple[int, str, str, int]:
    """Run the CLI as users do; return its exit code, stdout, stderr and peak RSS (of that process alone)."""
    with open(os.devnull, "rb") as stdin:
        process = subprocess.Popen([sys.executable, "-m", "wasmtime_gp", *args], stdin=stdin,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + timeout
    status, usage = 0, None
    # wait4 reports this child's own rusage; outputs are small, so the pipes cannot fill up and block it.
    while usage is None:
        pid, status, rusage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            usage = rusage
        elif time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"wasmtime-gp {' '.join(args)} did not finish in {timeout} s")
        else:
            time.sleep(0.05)
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.stdout is not None and process.stderr is not None
    stdout, stderr = process.stdout.read().decode(), process.stderr.read().decode()
    process.stdout.close()
    process.stderr.close()
    return process.returncode, stdout, stderr, usage.ru_maxrss * 1024


def test_the_cli_reports_and_converts_deep_profiles(deep, tmp_path):
    depth, path = deep
    code, stdout, stderr, _ = _run_measured(["report", str(path), "--tree"])
    assert code == 0 and not stderr, stderr[-3000:]
    assert "spin [deep]" in stdout and "└─ ..." in stdout
    _, _, _, baseline = _run_measured(
        ["report", str(Path(__file__).parent / "data" / "chain-wasmtime50.0.1.json")]
    )
    for kind in ("html", "speedscope", "pprof", "collapsed"):
        output = tmp_path / f"deep.{kind}"
        code, stdout, stderr, peak = _run_measured(["convert", str(path), "--to", kind, "-o", str(output)])
        assert code == 0 and not stderr, stderr[-3000:]
        assert stdout == f"wrote {output} ({kind})\n" and output.stat().st_size > 0
        assert peak - baseline < _memory_bound(path, depth), (kind, peak, baseline)


def test_the_html_flame_graph_page_handles_the_depth(deep, tmp_path):
    # The page's own script, run by node against a small DOM: it must neither recurse over the depth nor draw
    # every level (100,000 rows of boxes); zooming into the deepest frame drawn folds its callers into a row.
    node = tools.program("node")
    depth, path = deep
    page = tmp_path / "deep.html"
    code, _, stderr, _ = _run_measured(["convert", str(path), "--to", "html", "-o", str(page)])
    assert code == 0, stderr
    harness = tmp_path / "harness.js"
    harness.write_text(PAGE_HARNESS)
    done = subprocess.run(
        [node, str(harness), str(page)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    first, zoomed, folded = out["boxes"]
    assert 300 <= first < 400 and zoomed < 400 and folded < 400  # 300 levels under the focus at most
    # The deepest row drawn is level 300 of depth + 2 frames; it says how many levels it leads to.
    assert (
        out["deepest"].endswith(" more levels") and int(re.sub(r"\D", "", out["deepest"])) == depth + 2 - 300
    )
    assert out["fold"] and "more callers" in out["fold"][0]
    assert float(out["matched"].split()[1]) >= 50  # the search walked the whole depth to find spin


def test_the_html_flame_graph_opens_in_chromium_at_depth(deep, tmp_path):
    chromium = tools.program("chromium", "chromium-browser", "google-chrome")
    _, path = deep
    page = tmp_path / "deep.html"
    code, _, stderr, _ = _run_measured(["convert", str(path), "--to", "html", "-o", str(page)])
    assert code == 0, stderr
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--virtual-time-budget=5000", "--dump-dom", page.as_uri() + "#search=^spin$"]  # fmt: skip
    dom = subprocess.run(command, capture_output=True, text=True, timeout=180, check=True).stdout
    assert dom.count('class="frame') > 300 and "more levels" in dom  # drawn, down to the fold
    matched = re.search(r"matched ([\d.]+) %", dom)  # the search walked down to spin, at the bottom
    assert matched and float(matched.group(1)) >= 50


# Runs the page's script with a minimal DOM (the elements it uses, by id), then zooms, unfolds and searches.
PAGE_HARNESS = r"""
const fs = require("fs");
const vm = require("vm");
const page = fs.readFileSync(process.argv[2], "utf8");
const data = page.match(/<script id="profile-data" type="application\/json">([\s\S]*?)<\/script>/)[1];
const code = page.match(/<script>([\s\S]*?)<\/script>/)[1];
class Element {
  constructor() {
    this.children = []; this.style = {}; this.className = ""; this.text = ""; this.listeners = {}; this.value = "";
    this.classList = { add: (name) => { this.className += " " + name; } };
  }
  appendChild(child) {
    if (child.fragment) { for (const c of child.children) this.children.push(c); } else this.children.push(child);
    return child;
  }
  set textContent(text) { this.text = String(text); this.children = []; }
  get textContent() { return this.text; }
  addEventListener(kind, listener) { this.listeners[kind] = listener; }
  dispatchEvent(event) { this.listeners[event.type]({ target: this }); }
}
const elements = {};
const document = {
  getElementById: (id) => elements[id] || (elements[id] = new Element()),
  createElement: () => new Element(),
  createDocumentFragment: () => Object.assign(new Element(), { fragment: true }),
};
document.getElementById("profile-data").text = data;
const Event = class { constructor(type) { this.type = type; } };
vm.runInNewContext(code, { document, location: { hash: "" }, URLSearchParams, Event });
const boxes = () => elements.graph.children;
const out = { boxes: [boxes().length] };
const deepest = boxes().reduce((a, b) => (parseFloat(b.style.top) > parseFloat(a.style.top) ? b : a));
out.deepest = deepest.textContent;
deepest.onclick();
out.boxes.push(boxes().length);
out.fold = boxes().map((b) => b.textContent).filter((text) => text.includes("more callers"));
boxes().find((b) => b.textContent.includes("more callers")).onclick();
out.boxes.push(boxes().length);
elements.search.value = "^spin$";
elements.search.dispatchEvent({ type: "input" });
out.matched = elements.matched.textContent;
console.log(JSON.stringify(out));
"""


def test_an_internal_error_is_one_line_and_exit_code_1_and_debug_shows_the_traceback(
    monkeypatch, capsys, tmp_path
):
    profile = str(Path(__file__).parent / "data" / "chain-wasmtime50.0.1.json")

    def broken(profile: object) -> bytes:
        raise RuntimeError("something we did not expect\nsecond line")

    monkeypatch.setitem(FORMATS, "speedscope", broken)
    convert = ["convert", profile, "--to", "speedscope", "-o", str(tmp_path / "out.json")]
    assert cli.main(convert) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "wasmtime-gp convert: internal error: RuntimeError: something we did not expect; "
        "please report it with the traceback from --debug\n"
    )
    for argv in (["--debug", *convert], [*convert, "--debug"]):  # before or after the command
        assert cli.main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("Traceback (most recent call last):") and "in broken" in err
        assert err.rstrip().endswith("second line")
    # Bad input stays exit code 2, one line.
    assert cli.main(["report", str(tmp_path / "missing.json")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
