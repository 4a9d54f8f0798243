"""The release to ship: built from the source tree, or taken from a prebuilt wheel(house)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from irisctl.build import (
    BuildError,
    Wheelhouse,
    build_wheelhouse,
    normalized_version,
    source_version,
    wheelhouse_from,
)
from irisctl.errors import ConfigError, IrisctlError
from irisctl.ops.target import StepCallback
from irisctl.paths import project_root


def prepare_release(
    version: str | None, from_path: Path | None, on_step: StepCallback | None = None
) -> Wheelhouse:
    """Build the wheelhouse (or take a prebuilt one) into ``build/releases/<version>/``."""
    step = on_step or (lambda _msg: None)
    releases_dir = project_root() / "build" / "releases"
    try:
        if from_path is not None:
            check_release_source(from_path)
            step(f"preparing the release from {from_path}")
            staged = releases_dir / f"from-{from_path.stem}"
            wheelhouse = wheelhouse_from(from_path, staged)
            if version and wheelhouse.version != normalized_version(version):
                raise ConfigError(
                    f"--from {from_path} holds version {wheelhouse.version}, not {version}"
                )
            return wheelhouse
        target_version = version or source_version()
        step(f"building release {target_version}")
        return build_wheelhouse(releases_dir / target_version, version=version)
    except BuildError as exc:
        raise IrisctlError(f"build failed: {exc}") from exc
    except FileNotFoundError as exc:
        raise ConfigError(f"build failed: {exc}") from exc


def check_release_source(from_path: Path | None) -> None:
    """A prebuilt release given with --from must exist (checked before any lock is taken)."""
    if from_path is not None and not from_path.exists():
        raise ConfigError(f"--from {from_path}: no such file or directory")


def release_vars(wheelhouse: Wheelhouse) -> dict[str, Any]:
    """The extra vars that hand a release to the plays."""
    return {"service_wheelhouse_dir": str(wheelhouse.path), "service_version": wheelhouse.version}
