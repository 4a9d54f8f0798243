"""The suite runs as two groups side by side (`make test`: pytest-xdist, `--dist loadgroup`):
the real-host tests share one sandbox and run in order in one worker; everything else runs
in order in the other. Each group keeps the sequential order it was written for (fixed ports,
one sandbox), and the slow host stories no longer wait for the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

HOSTS_DIR = Path(__file__).parent / "hosts"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        group = "hosts" if HOSTS_DIR in Path(item.fspath).parents else "local"
        item.add_marker(pytest.mark.xdist_group(group))
