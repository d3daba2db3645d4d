"""Fetch wasmtime-py's own test suite, for tests/test_wasmtime_py_suite.py (.ci/run runs this).

    python tests/peer/fetch_tests.py DEST [VERSION]

Downloads the wasmtime sdist of VERSION with pip (default: the installed wasmtime's version; with none installed,
as in .ci/run's fresh environment before the README's command installs the newest, the newest release) and puts
its `tests/` in DEST/tests and its version in DEST/VERSION; nothing else of the sdist: its `wasmtime/` package has
no native library and would shadow the installed wasmtime.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath


def installed_wasmtime() -> str | None:
    try:
        return importlib.metadata.version("wasmtime")
    except importlib.metadata.PackageNotFoundError:
        return None


def fetch(dest: Path, version: str | None) -> str:
    """Put the sdist's tests/ in dest/tests and its version in dest/VERSION; return the version."""
    with tempfile.TemporaryDirectory() as download:
        requirement = "wasmtime" if version is None else f"wasmtime=={version}"
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
            + ["--dest", download, requirement],
            check=True,
        )
        (sdist,) = Path(download).glob("wasmtime-*.tar.gz")
        with tarfile.open(sdist) as archive:
            members = [member for member in archive.getmembers() if member.isfile()]
            root = PurePosixPath(members[0].name).parts[0]
            pkg_info = archive.extractfile(f"{root}/PKG-INFO")
            assert pkg_info is not None
            (found,) = [
                line.split(":", 1)[1].strip()
                for line in pkg_info.read().decode().splitlines()
                if line.startswith("Version:")
            ]
            tests = dest / "tests"
            if tests.exists():
                shutil.rmtree(tests)
            for member in members:
                parts = PurePosixPath(member.name).parts
                if parts[:2] != (root, "tests") or ".." in parts:
                    continue
                content = archive.extractfile(member)
                assert content is not None
                target = tests.joinpath(*parts[2:])
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content.read())
    (dest / "VERSION").write_text(found + "\n")
    return found


def main() -> None:
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    dest = Path(sys.argv[1])
    dest.mkdir(parents=True, exist_ok=True)
    version = fetch(dest, sys.argv[2] if len(sys.argv) == 3 else installed_wasmtime())
    print(f"wasmtime-py {version}'s tests are in {dest / 'tests'}")


if __name__ == "__main__":
    main()
