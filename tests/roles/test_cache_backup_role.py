"""The cache_backup role: its units render as the host contract wants, and no bucket means no
timer (units and environment removed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from role_helpers import render_role_template, run_play

SANDBOX_ENV = {"AWS_ENDPOINT_URL": "http://10.231.0.1:14566"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    extra = {"cache_backup_bucket": "iris-backups", "cache_backup_environment": SANDBOX_ENV}
    return {
        name: render_role_template(tmp_path_factory.mktemp(name), "cache_backup", name, extra)
        for name in (
            "iris-cache-backup.service.j2",
            "iris-cache-backup.timer.j2",
            "cache-backup.env.j2",
        )
    }


def settings(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in re.findall(r"^(\w+)=(.*)$", text, re.MULTILINE):
        found.setdefault(name, []).append(value)
    return found


def test_the_backup_service_runs_the_current_release_niced_as_the_service_user(rendered) -> None:
    unit = settings(rendered["iris-cache-backup.service.j2"])
    assert unit["Type"] == ["oneshot"]
    assert unit["ExecStart"] == ["/opt/iris/current/venv/bin/iris-service-admin backup"]
    assert unit["User"] == ["iris"] and unit["Group"] == ["iris"]
    assert unit["EnvironmentFile"] == ["/etc/iris/iris.env", "/etc/iris/cache-backup.env"]
    assert unit["UnsetEnvironment"] == ["AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN"]
    assert unit["Nice"] == ["19"] and unit["IOSchedulingClass"] == ["idle"]
    assert unit["ProtectSystem"] == ["strict"] and unit["NoNewPrivileges"] == ["true"]
    assert "ReadWritePaths" not in unit  # a backup only reads the cache


def test_the_timer_is_daily_persistent_and_randomized(rendered) -> None:
    timer = settings(rendered["iris-cache-backup.timer.j2"])
    assert timer["OnCalendar"] == ["daily"] and timer["Persistent"] == ["true"]
    assert timer["RandomizedDelaySec"] == ["1h"]
    assert timer["Unit"] == ["iris-cache-backup.service"]
    assert timer["WantedBy"] == ["timers.target"]


def test_the_environment_names_bucket_and_endpoint_and_no_credentials(rendered) -> None:
    env = settings(rendered["cache-backup.env.j2"])
    assert env["IRIS_BACKUP_BUCKET"] == ['"iris-backups"']
    assert env["IRIS_BACKUP_PREFIX"] == ['"cache-backups"']
    assert env["AWS_ENDPOINT_URL"] == ['"http://10.231.0.1:14566"']
    assert "IRIS_BACKUP_REGION" not in env  # empty: the service's AWS_REGION applies
    assert not [name for name in env if "SECRET" in name or "ACCESS_KEY" in name]


def role_play(tmp_path: Path, **role_vars: object) -> list[dict]:
    return [
        {
            "name": "Run the cache_backup role",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "become": False,
            "tasks": [
                {
                    "name": "Read the host layout",
                    "ansible.builtin.import_role": {"name": "service", "tasks_from": "read_layout"},
                },
                {
                    "name": "The role",
                    "ansible.builtin.include_role": {"name": "cache_backup"},
                    "vars": role_vars,
                },
            ],
        }
    ]


def test_no_bucket_removes_the_timer_and_the_environment(tmp_path: Path) -> None:
    env_file = tmp_path / "cache-backup.env"
    env_file.write_text('IRIS_BACKUP_BUCKET="old"\n')
    unit = "iris-cache-backup-test-absent"
    done = run_play(
        tmp_path, role_play(tmp_path, cache_backup_env_file=str(env_file), cache_backup_unit=unit)
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert not env_file.exists()
    assert "Enable and start the timer" not in done.stdout
    assert not Path(f"/etc/systemd/system/{unit}.timer").exists()


def test_credentials_in_the_backup_environment_are_refused(tmp_path: Path) -> None:
    env = {"AWS_SECRET_ACCESS_KEY": "x", **SANDBOX_ENV}
    done = run_play(
        tmp_path, role_play(tmp_path, cache_backup_bucket="b", cache_backup_environment=env)
    )
    assert done.returncode != 0
    assert "must not carry credentials (AWS_SECRET_ACCESS_KEY)" in done.stdout
    assert "x" not in re.findall(r"AWS_SECRET_ACCESS_KEY\W+(\w+)", done.stdout)
