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

from packaging.version import InvalidVersion, Version

from irisctl.paths import service_source_dir

# Hosts run CPython 3.11 on x86_64 (Debian 12: glibc 2.36, Amazon Linux 2023: glibc 2.34).
# pip does not expand an explicit --platform to older manylinux tags: list every tag a
# glibc 2.34 host accepts that wheels on PyPI actually use.
TARGET_PYTHON = "3.11"
TARGET_PLATFORMS = (
    "manylinux_2_34_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux_2_12_x86_64",
    "manylinux2010_x86_64",
    "manylinux_2_5_x86_64",
    "manylinux1_x86_64",
)
VERSION_FILE = Path("iris_service") / "_version.py"
_VERSION_RE = re.compile(r'^__version__\s*=\s*"([^"]+)"', re.MULTILINE)


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


def normalized_version(version: str) -> str:
    """``version`` as the wheel will carry it (PEP 440 normal form: ``1.02`` -> ``1.2``).

    The stamped source, the wheel's file name, the release directory and the version that
    /api/iris/health reports must all be the same string, or the deploy gate cannot match them.
    """
    try:
        return str(Version(version))
    except InvalidVersion as exc:
        raise BuildError(
            f"invalid version {version!r}: use a PEP 440 version such as 1.2.3"
        ) from exc


def _stamp_version(tree: Path, version: str) -> None:
    version = normalized_version(version)
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
    download_dependencies(wheels[0], dest_dir)
    return Wheelhouse(path=dest_dir, version=built_version, service_wheel=wheels[0])


def download_dependencies(service_wheel: Path, dest_dir: Path) -> None:
    """Download every runtime dependency of ``service_wheel`` as a host binary wheel."""
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
            *(arg for platform in TARGET_PLATFORMS for arg in ("--platform", platform)),
            "-d",
            str(dest_dir),
            str(service_wheel),
        ],
    )


def wheel_version(wheel: Path) -> str:
    """The version in a wheel's file name (``iris_service-1.2.3-py3-none-any.whl``)."""
    parts = Path(wheel).name.split("-")
    if len(parts) < 5 or not wheel.name.endswith(".whl"):
        raise BuildError(f"{wheel.name} is not a wheel file name")
    return parts[1]


def wheelhouse_from(path: Path, dest_dir: Path) -> Wheelhouse:
    """A release from a prebuilt service wheel (dependencies downloaded) or a wheelhouse dir."""
    path = Path(path).resolve()
    if path.is_dir():
        wheels = sorted(path.glob("iris_service-*.whl"))
        if len(wheels) != 1:
            raise BuildError(f"expected one iris_service wheel in {path}, found {len(wheels)}")
        return Wheelhouse(path=path, version=wheel_version(wheels[0]), service_wheel=wheels[0])
    if not path.is_file() or not path.name.startswith("iris_service-"):
        raise BuildError(f"{path} is neither an iris_service wheel nor a wheelhouse directory")
    dest_dir = Path(dest_dir)
    if dest_dir.exists():
        shutil.rmtree(dest_dir)
    dest_dir.mkdir(parents=True)
    wheel = Path(shutil.copy2(path, dest_dir / path.name))
    download_dependencies(wheel, dest_dir)
    return Wheelhouse(path=dest_dir, version=wheel_version(wheel), service_wheel=wheel)
