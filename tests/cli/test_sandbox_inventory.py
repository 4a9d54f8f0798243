"""The sandbox's inventory as Ansible reads it: one host, and a fleet (store + balancer)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from irisctl.sandbox import stack


@pytest.fixture(autouse=True)
def no_group_vars_link(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack, "_link_group_vars", lambda inventory: None)


def groups(path: Path) -> dict[str, list[str]]:
    manager = InventoryManager(loader=DataLoader(), sources=[str(path)])
    return {name: sorted(h.name for h in g.get_hosts()) for name, g in manager.groups.items()}


def test_a_single_host_has_no_store_and_no_balancer(tmp_path: Path) -> None:
    info = stack.SandboxInfo(
        hosts=stack.sandbox_hosts(1),
        inventory=tmp_path / "hosts.ini",
        model_url="",
        secrets_endpoint="",
    )
    stack._write_inventory(info)
    text = info.inventory.read_text()
    assert groups(info.inventory)["iris"] == ["iris-sandbox-1"]
    assert "iris_cache_store" not in text and "service_cache_url" not in text


def test_a_fleet_names_its_store_balancer_and_the_apps_cache_settings(tmp_path: Path) -> None:
    info = stack.SandboxInfo(
        hosts=stack.sandbox_hosts(2),
        inventory=tmp_path / "hosts.ini",
        model_url="http://10.231.0.1:14081",
        secrets_endpoint="",
        store=stack.STORE_HOST,
        balancer=stack.BALANCER_HOST,
    )
    stack._write_inventory(info, app_host_vars={"service_openai_base_url": info.model_base_url})
    found = groups(info.inventory)
    assert found["iris"] == ["iris-sandbox-1", "iris-sandbox-2"]
    assert found["iris_cache_store"] == ["iris-sandbox-store"]
    assert found["iris_balancer"] == ["iris-sandbox-lb"]
    text = info.inventory.read_text()
    assert "service_cache_url=redis://iris@10.231.0.30:6379/0" in text
    assert f"service_cache_password_secret_id={stack.STORE_SECRET_ID}" in text
    assert text.count("service_openai_base_url=http://10.231.0.1:14081/v1") == 2
    assert ":" not in text.split("redis://")[1].split("@")[0]  # a user, never a password
