"""The release builder stamps the version the wheel, the host and the health check agree on."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from irisctl import build
from irisctl.paths import service_source_dir


@pytest.fixture
def version_tree(tmp_path: Path) -> Path:
    target = tmp_path / build.VERSION_FILE
    target.parent.mkdir(parents=True)
    shutil.copy(service_source_dir() / build.VERSION_FILE, target)
    return tmp_path


def test_stamped_version_is_the_normal_form_the_wheel_will_carry(version_tree: Path) -> None:
    build._stamp_version(version_tree, "9.0.085350")
    assert build.source_version(version_tree) == "9.0.85350"


def test_plain_version_is_stamped_unchanged(version_tree: Path) -> None:
    build._stamp_version(version_tree, "1.4.0rc1")
    assert build.source_version(version_tree) == "1.4.0rc1"


@pytest.mark.parametrize("bad", ["latest", "1.0 beta", "", "v1..2"])
def test_invalid_version_is_refused_with_a_clear_message(version_tree: Path, bad: str) -> None:
    with pytest.raises(build.BuildError, match="invalid version"):
        build._stamp_version(version_tree, bad)


def test_wheel_version_reads_the_file_name() -> None:
    assert build.wheel_version(Path("iris_service-2.1.0-py3-none-any.whl")) == "2.1.0"
    with pytest.raises(build.BuildError):
        build.wheel_version(Path("iris_service.tar.gz"))
