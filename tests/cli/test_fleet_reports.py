"""Version drift across a fleet and the inventory's load balancer, as status/releases/health
report them (no host needed: the balancer comes from a real inventory file)."""

from __future__ import annotations

from pathlib import Path

from irisctl import render
from irisctl.ops.fleet import Balancer, balancer, version_drift


def test_one_release_everywhere_is_no_drift() -> None:
    assert version_drift({"b": "1.1.0", "a": "1.1.0"}) == {
        "versions": {"1.1.0": ["a", "b"]},
        "drift": False,
    }


def test_hosts_on_different_releases_are_drift_and_say_which() -> None:
    drift = version_drift({"web-2": "1.1.0", "web-1": "1.0.0", "web-3": None})
    assert drift["drift"] is True
    assert drift["versions"] == {"1.0.0": ["web-1"], "1.1.0": ["web-2"], "none": ["web-3"]}


def test_drift_is_one_line_naming_each_release_and_its_hosts(capsys) -> None:
    render.version_drift({"drift": True, "versions": {"1.0.0": ["web-1"], "1.1.0": ["web-2"]}})
    line = capsys.readouterr().out.strip()
    assert "version drift" in line
    assert "1.0.0: web-1" in line and "1.1.0: web-2" in line
    render.version_drift({"drift": False, "versions": {"1.0.0": ["web-1"]}})
    assert capsys.readouterr().out == ""


def test_the_balancer_comes_from_the_inventory_group(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        "[iris]\nweb-1 ansible_host=10.0.0.11\nweb-2 ansible_host=10.0.0.12\n\n"
        "[iris_balancer]\nlb ansible_host=10.0.0.31 iris_domain=iris.example.org\n"
    )
    assert balancer(inventory) == Balancer(
        name="lb", domain="iris.example.org", address="10.0.0.31"
    )


def test_a_single_host_inventory_has_no_balancer(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[iris]\nweb-1 ansible_host=10.0.0.11\n")
    assert balancer(inventory) is None
