"""`irisctl aws up | down` end to end: AWS resources in moto (server mode, the sandbox's), and
a sandbox host standing in for the instance.

The inventory is shaped like inventory/production (irisctl.sandbox.aws_standin): the aws_ec2
plugin finds the instance `up` created in moto by its tags; only the address Ansible reaches it
at (and the sandbox's own settings) come from a host_vars file, which outranks what the plugin
composes. So `up` runs its real path: resources, the inventory plugin, converge + deploy
(site.yml), restore onto a new instance, health. The story, in order: up from an empty
account, a real analysis, down (the cache is backed up first), the host's cache wiped, up
again (a new instance: the backup is restored and the same analysis is a hit), down --all.

The stand-in is the irisctl story's host; this file runs after test_irisctl.py (file order).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from host_helpers import IRISCTL_HOST, V1, Sandbox, https
from irisctl.sandbox.aws_standin import moto_client, moto_environment, stand_in_inventory

IRISCTL = str(Path(sys.executable).parent / "irisctl")
DEPLOYMENT = "iris-standin"
INSTANCE = f"{DEPLOYMENT}-1"
SECRET_NAME = f"{DEPLOYMENT}/openai-api-key"
BUCKET = f"{DEPLOYMENT}-cache-backups"
SOURCE = "def area(r):\n    return 3.14159 * r * r\n"


class Operator:
    def __init__(self, box: Sandbox, home: Path) -> None:
        self.box = box
        self.host = box.info.hosts[IRISCTL_HOST]
        self.inventory = stand_in_inventory(home / "inventory", DEPLOYMENT, self.host)
        env = moto_environment({k: v for k, v in os.environ.items() if "IRISCTL_" not in k})
        env.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_CACHE_HOME=str(home / ".cache"),
            IRISCTL_CA_BUNDLE=str(box.pebble_roots),
        )
        self.env = env

    def irisctl(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [IRISCTL, "-i", str(self.inventory), *args],
            env={**self.env, **extra_env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=1200,
        )

    def json(self, *args: str, **extra_env: str) -> Any:
        done = self.irisctl(*args, "--json", **extra_env)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout)

    def up(self) -> Any:
        release = str(self.box.releases[V1].path)
        return self.json(
            "aws", "up", "--skip-dns-check", "--from", release, OPENAI_API_KEY="sk-standin"
        )

    def analyze(self) -> dict[str, Any]:
        body = {"filename": "area.py", "language": "python", "source_code": SOURCE}
        answer = https(
            self.host, "/api/iris/analyze", self.box.pebble_roots, method="POST", body=body
        )
        assert answer.status == 200, answer.body
        return answer.json()

    def model_calls(self) -> int:
        stats = self.json("cache", "stats")
        return int(stats["hosts"][0]["model_calls"])

    def aws(self, service: str) -> Any:
        return moto_client(service)

    def instances(self) -> list[dict[str, Any]]:
        found = self.aws("ec2").describe_instances(
            Filters=[
                {"Name": "tag:iris:deployment", "Values": [DEPLOYMENT]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ]
        )
        return [i for r in found["Reservations"] for i in r["Instances"]]

    def backups(self) -> list[dict[str, Any]]:
        listed = self.aws("s3").list_objects_v2(Bucket=BUCKET)
        return list(listed.get("Contents", []))


@pytest.fixture(scope="module")
def operator(converged: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Operator:
    return Operator(converged, tmp_path_factory.mktemp("aws-operator"))


def test_up_from_an_empty_account_ends_with_a_healthy_converged_instance(
    operator: Operator,
) -> None:
    assert operator.instances() == []
    data = operator.up()
    kinds = {r["kind"]: r for r in data["resources"]}
    assert kinds["instance"]["action"] == "create"
    (instance,) = operator.instances()
    assert kinds["instance"]["id"] == instance["InstanceId"]
    # the inventory plugin found the instance by its tags; the stand-in host was converged
    assert data["converge"]["hosts"] == [INSTANCE]
    assert data["converge"]["version"] == V1
    assert data["healthy"] is True
    # a new instance with no backup yet: nothing to restore, said so
    assert data["cache_restore"]["hosts"][0]["restored"] == 0
    # the service reads the OpenAI key from the secret `up` made
    assert operator.aws("secretsmanager").describe_secret(SecretId=SECRET_NAME)["Name"]
    operator.box.timings["aws up (converge)"] = data["timings"]["total_seconds"]


def test_down_backs_the_cache_up_before_removing_the_instance(operator: Operator) -> None:
    operator.analyze()
    data = operator.json("aws", "down", "--yes")
    (backup,) = data["backup"]["hosts"]
    assert backup["entries"] >= 1
    keys = [obj["Key"] for obj in operator.backups()]
    assert backup["key"] in keys
    assert operator.instances() == []
    assert {r["kind"] for r in data["removed"]} == {"instance", "security-group"}


def test_up_on_a_new_instance_restores_the_latest_backup_so_it_starts_warm(
    operator: Operator, converged: Sandbox
) -> None:
    # the rebuilt instance starts with an empty cache (the stand-in host's is wiped)
    wipe = subprocess.run(
        [IRISCTL, "-i", str(converged.inventory), "--limit", operator.host.name]
        + ["cache", "clear", "--yes", "--json"],
        env={k: v for k, v in operator.env.items() if k != "IRISCTL_CA_BUNDLE"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert wipe.returncode == 0, wipe.stderr
    data = operator.up()
    assert {r["kind"]: r["action"] for r in data["resources"]}["instance"] == "create"
    (restored,) = data["cache_restore"]["hosts"]
    assert restored["restored"] >= 1, restored
    calls = operator.model_calls()
    operator.analyze()
    assert operator.model_calls() == calls, "the restored analysis was not a cache hit"


def test_down_all_removes_every_resource(operator: Operator) -> None:
    done = operator.irisctl("aws", "down", "--all", "--yes", "--skip-backup")
    assert done.returncode == 0, done.stderr[-3000:]
    assert operator.instances() == []
    assert (
        operator.aws("ec2").describe_addresses(
            Filters=[{"Name": "tag:iris:deployment", "Values": [DEPLOYMENT]}]
        )["Addresses"]
        == []
    )
    assert BUCKET not in {b["Name"] for b in operator.aws("s3").list_buckets()["Buckets"]}
