"""irisctl cache backup | backups | restore: what each passes to cache.yml, its --json, and how
each of the admin tool's refusals becomes one line and an exit code."""

from __future__ import annotations

import json
from typing import Any

import pytest
from irisctl.ops import cache as cache_ops
from irisctl.ops.target import Target

BACKUP = {
    "id": "20261126T153045.123Z-local-1",
    "bucket": "iris-backups",
    "key": "cache-backups/20261126T153045.123Z-local-1.tar.gz",
    "entries": 3,
    "bytes": 1234,
    "seconds": 0.2,
}
LISTED = {
    "bucket": "iris-backups",
    "prefix": "cache-backups",
    "backups": [
        {
            "id": BACKUP["id"],
            "key": BACKUP["key"],
            "bytes": 1234,
            "entries": 3,
            "host": "local-1",
            "created": "2026-11-26T15:30:45+00:00",
            "age_seconds": 7200,
        }
    ],
}
RESTORED = {
    "id": BACKUP["id"],
    "restored": 3,
    "kept_existing": 1,
    "skipped_expired": 0,
    "skipped_corrupt": 0,
    "evicted": 0,
    "seconds": 0.1,
}


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """cache.yml replaced by the admin tool's answer; returns the extra vars each run got."""
    calls: list[dict[str, Any]] = []
    answers: dict[str, tuple[int, dict[str, Any]]] = {
        "backup": (0, BACKUP),
        "backups": (0, LISTED),
        "restore": (0, RESTORED),
    }

    def reports(self: Target, playbook: str, **kwargs: Any) -> dict[str, Any]:
        assert playbook == "cache"
        extravars = kwargs["extravars"]
        calls.append(extravars)
        rc, result = answers[extravars["iris_cache_action"]]
        return {"local-1": {"rc": rc, "result": result}}

    monkeypatch.setattr(Target, "reports", reports)
    calls.append({"answers": answers})  # calls[0]: the answers, for a test to change
    return calls


def answer(admin: list[dict[str, Any]], action: str, rc: int, result: dict[str, Any]) -> None:
    admin[0]["answers"][action] = (rc, result)


def test_backup_json(invoke, local_inventory, admin) -> None:
    result = invoke("-i", str(local_inventory), "cache", "backup", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"hosts": [{"host": "local-1", **BACKUP}]}
    assert admin[1] == {"iris_cache_action": "backup"}


def test_backup_human_line_names_id_entries_and_object(invoke, local_inventory, admin) -> None:
    result = invoke("-i", str(local_inventory), "cache", "backup")
    assert result.exit_code == 0
    assert f"local-1: backup {BACKUP['id']}: 3 entries" in result.output
    assert f"s3://iris-backups/{BACKUP['key']}" in result.output


def test_backups_json_and_table(invoke, local_inventory, admin) -> None:
    result = invoke("-i", str(local_inventory), "cache", "backups", "--json")
    assert json.loads(result.stdout) == {"hosts": [{"host": "local-1", **LISTED}]}
    table = invoke("-i", str(local_inventory), "cache", "backups").output
    assert BACKUP["id"] in table and "2h ago" in table.replace(" 0m", "")


def test_restore_latest_json(invoke, local_inventory, admin) -> None:
    result = invoke("-i", str(local_inventory), "cache", "restore", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"hosts": [{"host": "local-1", **RESTORED}]}
    assert admin[1] == {"iris_cache_action": "restore"}


def test_restore_from_an_id(invoke, local_inventory, admin) -> None:
    result = invoke("-i", str(local_inventory), "cache", "restore", "--from", BACKUP["id"], "-y")
    assert result.exit_code == 0, result.stderr
    assert admin[1] == {"iris_cache_action": "restore", "iris_cache_backup_id": BACKUP["id"]}


def test_restore_asks_first_and_aborts_on_no(invoke, local_inventory, admin) -> None:
    result = invoke("-i", str(local_inventory), "cache", "restore", input="n\n")
    assert result.exit_code == 1 and len(admin) == 1
    assert "Restore the latest backup into the cache on all hosts?" in result.output


def test_restore_of_a_malformed_id_is_a_usage_error(invoke, local_inventory, admin) -> None:
    result = invoke("-i", str(local_inventory), "cache", "restore", "--from", "../x", "--yes")
    assert result.exit_code == 2 and len(admin) == 1
    assert "is not a backup id" in result.stderr


def test_no_bucket_configured_is_a_config_error(invoke, local_inventory, admin) -> None:
    error = {"error": "no backup bucket configured (IRIS_BACKUP_BUCKET)"}
    answer(admin, "backup", 4, error)
    result = invoke("-i", str(local_inventory), "cache", "backup", "--json")
    assert result.exit_code == 3
    assert result.stderr.strip().splitlines()[0] == (
        "error: cache backup on local-1: no backup bucket configured (IRIS_BACKUP_BUCKET): "
        "set cache_backup_bucket in the inventory and provision"
    )


@pytest.mark.parametrize(
    ("action", "rc", "message"),
    [
        ("restore", 3, "no such backup: 20200101T000000.000Z-gone"),
        ("restore", 5, "no backups in s3://iris-backups/cache-backups/"),
        ("backup", 6, "access denied to s3://iris-backups/cache-backups/ (backup: AccessDenied)"),
        ("backups", 7, "list backups: S3 unreachable (Could not connect)"),
        ("backups", 8, "no such bucket: iris-backups"),
    ],
)
def test_each_admin_refusal_is_one_line_and_exit_1(
    invoke, local_inventory, admin, action, rc, message
) -> None:
    answer(admin, action, rc, {"error": message})
    result = invoke("-i", str(local_inventory), "cache", action, *(["-y"] * (action == "restore")))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[0] == f"error: cache {action} on local-1: {message}"
    assert "Traceback" not in result.output + result.stderr


def test_restore_latest_if_empty_restores_or_reports_why_not(local_inventory, admin) -> None:
    target = Target(inventory=local_inventory)
    assert cache_ops.restore_latest_if_empty(target) == {"hosts": [{"host": "local-1", **RESTORED}]}
    assert admin[1] == {"iris_cache_action": "restore", "iris_cache_if_empty": True}
    answer(admin, "restore", 0, {"restored": 0, "skipped_reason": "cache not empty"})
    (host,) = cache_ops.restore_latest_if_empty(target)["hosts"]
    assert host == {"host": "local-1", "restored": 0, "skipped_reason": "cache not empty"}
    answer(admin, "restore", 4, {"error": "no backup bucket configured (IRIS_BACKUP_BUCKET)"})
    (host,) = cache_ops.restore_latest_if_empty(target)["hosts"]
    assert host == {"host": "local-1", "restored": 0, "skipped_reason": "no backup bucket"}
    answer(admin, "restore", 6, {"error": "access denied to s3://b/p/ (restore: AccessDenied)"})
    with pytest.raises(cache_ops.IrisctlError, match="access denied"):
        cache_ops.restore_latest_if_empty(target)
