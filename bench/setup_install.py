"""The setup's package install (``make setup``'s first step) by pip, as it was, against uv, as the Makefile now
does it: each into a new virtual environment with no download cache (a fresh machine's first ``make run``),
taking turns, which of them goes first alternating, then the installed versions compared.

Issue 21 counts the setup in ``make run``'s 10 minutes from a fresh clone. Both install this checkout's package
editable with its ``dev`` extra, as the Makefile's ``$(STAMP)`` rule does; uv at the Makefile's ``UV_VERSION``,
installed by pip into the environment first, its seconds counted. Nothing else runs Spark here, but the downloads
and unpacking compete for the machine: run it alone.

    .venv/bin/python bench/setup_install.py --repeat 2

Prints the seconds and writes ``bench/results/setup_install.json`` with the commit.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def uv_version(makefile: Path = ROOT / "Makefile") -> str:
    """The uv version the Makefile installs (its ``UV_VERSION ?= ...`` line)."""
    found = re.search(r"^UV_VERSION \?= *(\S+)", makefile.read_text(), re.M)
    if not found:
        raise SystemExit(f"{makefile}: no `UV_VERSION ?= ...` line")
    return found.group(1)


def commands(way: str, python: Path, uv: str) -> list[list[str]]:
    """The install commands of one way, into the environment of ``python``, with no cache."""
    project = f"{ROOT}[dev]"
    if way == "pip":
        return [[str(python), "-m", "pip", "install", "--quiet", "--no-cache-dir", "--upgrade", "pip", "setuptools", "wheel"],
                [str(python), "-m", "pip", "install", "--quiet", "--no-cache-dir", "-e", project]]
    tools = ["pip", "setuptools", "wheel", *[x for t in ("pip", "setuptools", "wheel") for x in ("--upgrade-package", t)]]
    return [[str(python), "-m", "pip", "install", "--quiet", "--no-cache-dir", "--only-binary=:all:", f"uv=={uv}"],
            [str(python), "-m", "uv", "pip", "install", "--quiet", "--no-cache", "--python", str(python), *tools, "-e", project]]


def installed(python: Path) -> list[str]:
    """``name==version`` of every package in the environment (pip, setuptools and wheel too) but the project and uv."""
    out = subprocess.run([str(python), "-m", "pip", "freeze", "--all", "--exclude-editable"], check=True, capture_output=True,
                         text=True)
    return sorted(line for line in out.stdout.splitlines() if line and not line.startswith(("-e", "uv==")))


def one_install(way: str, where: Path, uv: str) -> tuple[float, list[str]]:
    """A new environment at ``where``, the package installed ``way``: (seconds of the install, its versions)."""
    shutil.rmtree(where, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    python = where / "bin" / "python"
    start = time.perf_counter()
    for cmd in commands(way, python, uv):
        subprocess.run(cmd, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    return seconds, installed(python)


def main(argv: list[str] | None = None) -> dict:
    from bench.nightly_bench import write_result
    from jobs.platform.provenance import git_state

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2, help="installs of each way (default 2)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/setup_install.json")
    args = ap.parse_args(argv)
    uv, code = uv_version(), git_state()
    seconds: dict[str, list[float]] = {"pip": [], "uv": []}
    versions: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="setup_install_") as tmp:
        for i in range(args.repeat):
            for way in (("pip", "uv") if i % 2 == 0 else ("uv", "pip")):
                s, versions[way] = one_install(way, Path(tmp) / way, uv)
                seconds[way].append(round(s, 1))
                print(f"setup_install: {way} {s:.1f}s (repeat {i + 1}/{args.repeat})", flush=True)
    pip_s, uv_s = statistics.median(seconds["pip"]), statistics.median(seconds["uv"])
    result = write_result(args.out, {
        "seconds": seconds, "pip_median": pip_s, "uv_median": uv_s, "uv_over_pip": round(uv_s / pip_s, 2),
        "same_versions": versions["pip"] == versions["uv"], "packages": len(versions["pip"]),
        "only_pip": sorted(set(versions["pip"]) - set(versions["uv"])),
        "only_uv": sorted(set(versions["uv"]) - set(versions["pip"])), "uv_version": uv,
    }, None, "bench/setup_install.py", sys.argv[1:] if argv is None else argv, code)
    print(f"setup_install: pip {pip_s:.1f}s, uv {uv_s:.1f}s ({result['uv_over_pip']}x), the same "
          f"{result['packages']} package versions: {result['same_versions']} -> {args.out}")
    return result


if __name__ == "__main__":
    main()
