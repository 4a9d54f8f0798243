"""Where the project's own files are, wherever irisctl is run from."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The repository holding playbooks/, roles/ and service/ (IRIS_OPS_ROOT overrides)."""
    override = os.environ.get("IRIS_OPS_ROOT")
    if override:
        return Path(override).resolve()
    return Path(__file__).resolve().parents[2]


def service_source_dir() -> Path:
    return project_root() / "service"


def playbooks_dir() -> Path:
    return project_root() / "playbooks"
