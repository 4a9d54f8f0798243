"""Named API keys, per-key rate limits and daily budgets on a real host, through nginx, driven by
the `irisctl keys` console script (real plays, the service role's keys entry point).

Works on the edge host after test_edge's story has ended (files run in name order): it only adds
keys of its own, whose counts and budgets touch no other key, and removes the keys file again at
the end. The default key (IRIS_API_KEY) must keep working throughout, with no restart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from host_helpers import API_KEY, EDGE_HOST, HttpAnswer, Sandbox
from irisctl.sandbox import hosts
from irisctl.sandbox.hosts import Host

IRISCTL = str(Path(sys.executable).parent / "irisctl")
KEYS_FILE = "/etc/iris/api_keys.json"
OPERATOR_ENV = ("IRISCTL_INVENTORY", "IRISCTL_CONFIG", "IRISCTL_CA_BUNDLE", "IRISCTL_DEBUG")


class KeysHost:
    def __init__(self, sandbox: Sandbox, home: Path) -> None:
        self.sandbox = sandbox
        self.host: Host = sandbox.info.hosts[EDGE_HOST]
        env = {k: v for k, v in os.environ.items() if k not in OPERATOR_ENV}
        env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
        env.update(XDG_CACHE_HOME=str(home / ".cache"), IRISCTL_INVENTORY=str(sandbox.inventory))
        self.env = env

    def irisctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [IRISCTL, "--limit", self.host.name, "keys", *args]
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=300)

    def json(self, *args: str) -> Any:
        done = self.irisctl(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def ssh(self, command: str) -> str:
        argv = [*hosts.ssh_command(self.host, "root"), command]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
        return done.stdout.strip()

    def main_pid(self) -> str:
        return self.ssh("systemctl show -p MainPID --value iris-backend")

    def analyze(self, key: str | None, source: str) -> HttpAnswer:
        """One analysis through nginx (TLS verified), with ``key`` as x-api-key."""
        fqdn, ip = self.host.fqdn, self.host.ip
        body = {"filename": "k.py", "language": "python", "source_code": source}
        argv = ["curl", "-sS", "--max-time", "60", "--resolve", f"{fqdn}:443:{ip}"]
        argv += ["--cacert", str(self.sandbox.pebble_roots), "-D", "-", "-X", "POST"]
        argv += ["-H", "content-type: application/json", "--data-binary", json.dumps(body)]
        if key is not None:
            argv += ["-H", f"x-api-key: {key}"]
        done = subprocess.run(
            [*argv, f"https://{fqdn}/api/iris/analyze"], capture_output=True, text=True, timeout=70
        )
        if done.returncode != 0:
            return HttpAnswer(status=-1, body=done.stderr.strip(), headers="")
        head, _, payload = done.stdout.partition("\n\n")
        return HttpAnswer(status=int(head.split()[1]), body=payload, headers=head.lower())


def source(tag: str) -> str:
    return f"def keyed_{tag}(value):\n    return value * 2\n"


@pytest.fixture(scope="module")
def box(converged: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeysHost]:
    keys_host = KeysHost(converged, tmp_path_factory.mktemp("keys-operator"))
    keys_host.ssh(f"rm -f {KEYS_FILE}")
    yield keys_host
    keys_host.ssh(f"rm -f {KEYS_FILE}")  # the host as the other stories know it


@pytest.fixture(scope="module")
def keys(box: KeysHost) -> dict[str, str]:
    """alice (3 requests a minute) and bob (a budget one model call spends), made while the
    default key is in use: none of its requests fails and the service is not restarted."""
    pid = box.main_pid()
    failures: list[int] = []
    stop = threading.Event()

    def default_client() -> None:
        while not stop.is_set():
            answer = box.analyze(API_KEY, source("default-steady"))
            if answer.status != 200:
                failures.append(answer.status)

    client = threading.Thread(target=default_client)
    client.start()
    try:
        alice = box.json("add", "alice", "--rate-per-minute", "3")
        bob = box.json("add", "bob", "--daily-budget-usd", "0.0000001")
    finally:
        stop.set()
        client.join()
    assert failures == []
    assert box.main_pid() == pid
    return {"alice": alice["key"], "bob": bob["key"]}


def test_the_keys_file_holds_hashes_only_root_owned_readable_by_the_service(
    box: KeysHost, keys: dict[str, str]
) -> None:
    assert box.ssh(f"stat -c '%a %U %G' {KEYS_FILE}") == "640 root iris"
    content = box.ssh(f"cat {KEYS_FILE}")
    assert set(json.loads(content)["keys"]) == {"alice", "bob"}
    assert keys["alice"] not in content and keys["bob"] not in content
    logs = box.ssh("cat /var/log/iris/*.log")
    assert keys["alice"] not in logs and keys["bob"] not in logs


def test_a_new_key_works_at_once_and_the_default_key_still_does(
    box: KeysHost, keys: dict[str, str]
) -> None:
    assert box.analyze(API_KEY, source("cached")).status == 200  # the model call: no budget
    assert box.analyze(keys["bob"], source("cached")).status == 200  # a hit costs nothing
    wrong = box.analyze("iris_not-a-key", source("cached"))
    assert wrong.status == 401 and wrong.json()["error"] == "Invalid API key"


def test_over_its_rate_a_key_gets_429_json_with_retry_after(
    box: KeysHost, keys: dict[str, str]
) -> None:
    statuses = [box.analyze(keys["alice"], source("cached")).status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = box.analyze(keys["alice"], source("cached"))
    assert limited.status == 429
    assert limited.json()["limit"] == "rate" and limited.json()["key"] == "alice"
    retry_after = [line for line in limited.headers.splitlines() if line.startswith("retry-after")]
    assert retry_after and 1 <= int(retry_after[0].split(":")[1]) <= 60
    assert box.analyze(API_KEY, source("cached")).status == 200  # its own count


def test_a_spent_budget_refuses_model_calls_and_still_serves_cache_hits(
    box: KeysHost, keys: dict[str, str]
) -> None:
    assert box.analyze(keys["bob"], source("bob-1")).status == 200  # spends the budget
    refused = box.analyze(keys["bob"], source("bob-2"))
    assert refused.status == 429
    body = refused.json()
    assert body["limit"] == "budget" and body["budget"] == "key"
    assert body["resets_at"].endswith("T00:00:00+00:00")
    assert box.analyze(keys["bob"], source("bob-1")).status == 200  # cached


def test_keys_list_shows_use_and_spend_against_budget(box: KeysHost, keys: dict[str, str]) -> None:
    data = box.json("list")
    by_name = {row["name"]: row for row in data["keys"]}
    assert set(by_name) == {"default", "alice", "bob"}
    bob = by_name["bob"]
    assert bob["model_calls"] == 1 and bob["requests"] >= 3 and bob["last_used"]
    assert bob["daily_budget_usd"] == 0.0000001 and bob["spent_today_usd"] > 0
    assert by_name["alice"]["rate_per_minute"] == 3 and by_name["alice"]["created"]
    table = box.irisctl("list")
    assert table.returncode == 0 and "alice" in table.stdout and " of $" in table.stdout


def test_rotate_and_revoke_take_effect_without_a_restart(
    box: KeysHost, keys: dict[str, str]
) -> None:
    pid = box.main_pid()
    new = box.json("rotate", "bob")["key"]
    assert box.analyze(keys["bob"], source("bob-1")).status == 401
    assert box.analyze(new, source("bob-1")).status == 200
    assert box.json("revoke", "bob") == {"name": "bob", "revoked": True}
    assert box.analyze(new, source("bob-1")).status == 401
    assert box.main_pid() == pid
    unknown = box.irisctl("revoke", "bob")
    assert unknown.returncode == 2 and "no key named 'bob'" in unknown.stderr


def test_a_corrupt_keys_file_keeps_the_last_good_set_and_is_named(
    box: KeysHost, keys: dict[str, str]
) -> None:
    good = box.ssh(f"cat {KEYS_FILE}")
    box.ssh(f"printf '{{\"format\": 1' > {KEYS_FILE}.new && mv {KEYS_FILE}.new {KEYS_FILE}")
    try:
        assert box.analyze(API_KEY, source("cached")).status == 200
        assert box.analyze("iris_not-a-key", source("cached")).status == 401  # never open
        errors = box.ssh("grep -c 'keeping the last good set' /var/log/iris/error.log || true")
        assert 1 <= int(errors) <= 2  # once per worker that noticed
        listing = box.irisctl("list")
        assert listing.returncode == 1
        assert f"the keys file on {box.host.name} is not valid JSON" in listing.stderr
    finally:
        box.ssh(f"cat > {KEYS_FILE}.new <<'EOF'\n{good}\nEOF\nmv {KEYS_FILE}.new {KEYS_FILE}")
