"""The hand-over between `make test`'s two single-host runs (host_helpers.hand_over and
take_over): no hosts needed, only the directory both runs share."""

from __future__ import annotations

from pathlib import Path

import pytest
from host_helpers import HANDOVER_FILE, Sandbox, hand_over, take_over
from irisctl.build import Wheelhouse
from irisctl.sandbox.hosts import Host
from irisctl.sandbox.stack import SandboxInfo


def converged_box(workdir: Path) -> Sandbox:
    info = SandboxInfo(
        hosts=[Host(name="iris-sandbox-1", ip="10.231.0.11")],
        inventory=workdir / "hosts.ini",
        model_url="http://10.231.0.1:14080",
        secrets_endpoint="http://10.231.0.1:14566",
    )
    release = Wheelhouse(path=workdir / "release", version="1.0.0", service_wheel=workdir / "w")
    box = Sandbox(info=info, workdir=workdir, releases={"1.0.0": release}, pebble_roots=workdir)
    box.timings["sandbox up"] = 3.0
    return box


def test_the_guest_gets_the_converged_sandbox_with_logs_of_its_own(tmp_path: Path) -> None:
    owner = converged_box(tmp_path / "owner")
    hand_over(tmp_path, owner)
    assert [p.name for p in tmp_path.iterdir()] == [HANDOVER_FILE]  # no staging file left
    guest = take_over(tmp_path, tmp_path / "guest", wait_s=0.0)
    assert guest.info == owner.info and guest.releases == owner.releases
    assert guest.workdir == tmp_path / "guest" and guest.timings == {}


def test_the_owners_failure_reaches_the_guest_at_once(tmp_path: Path) -> None:
    hand_over(tmp_path, None, "converge failed: site.yml rc=2")
    with pytest.raises(pytest.fail.Exception, match="could not converge.*site.yml rc=2"):
        take_over(tmp_path, tmp_path / "guest", wait_s=60.0)


def test_no_hand_over_fails_after_the_bounded_wait(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="no converged sandbox within 0 s"):
        take_over(tmp_path, tmp_path / "guest", wait_s=0.0)
