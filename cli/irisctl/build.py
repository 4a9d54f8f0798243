"""Build a release: the service wheel plus every runtime dependency as a binary wheel.

Hosts install a release with ``pip install --no-index --find-links``, so neither a deploy nor
a rollback depends on PyPI being reachable from the host.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from irisctl.paths import service_source_dir

# Hosts run CPython 3.11 on x86_64 (Debian 12: glibc 2.36, Amazon Linux 2023: glibc 2.34);
# pip expands manylinux_2_34 to every older manylinux tag.
TARGET_PYTHON = "3.11"
TARGET_PLATFORM = "manylinux_2_34_x86_64"
VERSION_FILE = Path("iris_service") / "_version.py"
_VERSION_RE = re.compile(r'^__version__\s*=\s*"([^"]+)"', re.MULTILINE)
_VALID_VERSION_RE = re.compile(r"^[0-9]+(\.[0-9]+)*([a-z0-9.+-]*)$", re.IGNORECASE)


class BuildError(RuntimeError):
    """A release could not be built; the message says which step failed."""


@dataclass(frozen=True)
class Wheelhouse:
    path: Path
    version: str
    service_wheel: Path


def source_version(source_dir: Path | None = None) -> str:
    text = ((source_dir or service_source_dir()) / VERSION_FILE).read_text()
    match = _VERSION_RE.search(text)
    if not match:
        raise BuildError(f"no __version__ in {VERSION_FILE}")
    return match.group(1)


def _stamp_version(tree: Path, version: str) -> None:
    if not _VALID_VERSION_RE.match(version):
        raise BuildError(f"invalid version {version!r}: use a PEP 440 version such as 1.2.3")
    version_file = tree / VERSION_FILE
    text = _VERSION_RE.sub(f'__version__ = "{version}"', version_file.read_text())
    version_file.write_text(text)


def _run(step: str, argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise BuildError(f"{step} failed: " + " | ".join(tail))


def build_wheelhouse(
    dest_dir: Path, version: str | None = None, source_dir: Path | None = None
) -> Wheelhouse:
    """Build the service wheel (stamped with ``version`` when given) and its dependencies."""
    source_dir = (source_dir or service_source_dir()).resolve()
    if not (source_dir / "pyproject.toml").is_file():
        raise BuildError(f"{source_dir} is not a service source tree (no pyproject.toml)")
    dest_dir = Path(dest_dir)
    if dest_dir.exists():
        shutil.rmtree(dest_dir)
    dest_dir.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="iris-build-") as tmp:
        tree = Path(tmp) / "service"
        shutil.copytree(
            source_dir,
            tree,
            ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".iris"),
        )
        if version:
            _stamp_version(tree, version)
        built_version = source_version(tree)
        _run(
            "building the service wheel",
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "-w",
                str(dest_dir),
                str(tree),
            ],
        )
    wheels = sorted(dest_dir.glob("iris_service-*.whl"))
    if len(wheels) != 1:
        raise BuildError(f"expected one service wheel in {dest_dir}, found {len(wheels)}")
    _run(
        "downloading dependency wheels",
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--only-binary=:all:",
            "--python-version",
            TARGET_PYTHON,
            "--implementation",
            "cp",
            "--platform",
            TARGET_PLATFORM,
            "-d",
            str(dest_dir),
            str(wheels[0]),
        ],
    )
    return Wheelhouse(path=dest_dir, version=built_version, service_wheel=wheels[0])
