"""Write tests/data/chain-wasmtime<VERSION>.json: a real profile from the installed wasmtime-py.

Run it once in a virtual environment per wasmtime release whose profile format the tests must read
(19.0.0 writes fxprof-processed-profile 0.6's format, 39.0.0 and later write 0.8's):
    python tests/data/make_fixtures.py
"""

import sys
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from conftest import instantiate
from guests import CHAIN

from wasmtime_gp import GuestProfiler

guest = instantiate(CHAIN)
with GuestProfiler(guest.store, [guest.module], interval=0.001) as profiler:
    guest.call("run", 60_000_000)
version = metadata.version("wasmtime")
path = profiler.save(HERE / f"chain-wasmtime{version}.json")
print(f"{path}: {profiler.sample_count} samples")
