"""irisctl's argument handling, inventory resolution, one-line errors, exit codes, --json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from irisctl import inventory
from irisctl.commands.cache import clear as cache_clear_command
from irisctl.main import cli
from irisctl.ops.target import Target

COMMANDS = [
    ["sandbox", "up"],
    ["sandbox", "down"],
    ["sandbox", "status"],
    ["provision"],
    ["deploy"],
    ["rollback"],
    ["releases"],
    ["restart"],
    ["status"],
    ["logs"],
    ["cache", "stats"],
    ["cache", "inspect"],
    ["cache", "clear"],
    ["cache", "backup"],
    ["cache", "backups"],
    ["cache", "restore"],
    ["health"],
    ["unlock"],
]


def no_traceback(result) -> None:
    assert "Traceback" not in result.output + result.stderr


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_examples_and_exit_codes(invoke, command) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "Examples:" in result.output
    assert "Exit codes:" in result.output


@pytest.mark.parametrize("command", [["status"], ["releases"], ["health"], ["cache", "stats"]])
def test_reporting_commands_take_json(invoke, command) -> None:
    assert "--json" in invoke(*command, "--help").output


def test_no_inventory_is_one_line_and_exit_3(invoke, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(inventory, "sandbox_inventory", lambda: tmp_path / "none.ini")
    monkeypatch.chdir(tmp_path)
    result = invoke("status")
    assert result.exit_code == 3
    assert result.stderr.strip().splitlines() == [
        "error: no inventory: pass -i PATH, set IRISCTL_INVENTORY, "
        "or run `irisctl sandbox up` to create the sandbox"
    ]
    no_traceback(result)


def test_missing_inventory_file_names_where_it_came_from(invoke, monkeypatch) -> None:
    monkeypatch.setenv("IRISCTL_INVENTORY", "/nonexistent/hosts.ini")
    result = invoke("releases")
    assert result.exit_code == 3
    assert "inventory /nonexistent/hosts.ini (from $IRISCTL_INVENTORY) does not exist" in (
        result.stderr
    )


def test_inventory_resolution_order(monkeypatch, tmp_path: Path) -> None:
    option, env, configured = (tmp_path / n for n in ("opt.ini", "env.ini", "conf.ini"))
    for path in (option, env, configured):
        path.write_text("[iris]\n")
    config = tmp_path / "irisctl.toml"
    config.write_text('inventory = "conf.ini"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IRISCTL_INVENTORY", str(env))
    assert inventory.resolve_inventory(str(option)).path == option
    assert inventory.resolve_inventory(None).path == env
    monkeypatch.delenv("IRISCTL_INVENTORY")
    resolved = inventory.resolve_inventory(None)
    assert resolved.path == configured and resolved.source == f"config {config}"
    config.unlink()
    monkeypatch.setattr(inventory, "sandbox_inventory", lambda: option)
    assert inventory.resolve_inventory(None).source == "sandbox"


def test_bad_config_file_is_exit_3(invoke, monkeypatch, tmp_path) -> None:
    (tmp_path / "irisctl.toml").write_text("inventory = [unclosed\n")
    monkeypatch.chdir(tmp_path)
    result = invoke("status")
    assert result.exit_code == 3
    assert "is not valid TOML" in result.stderr
    no_traceback(result)


@pytest.mark.parametrize(
    "args",
    [
        ["logs", "--unit", "kernel"],
        ["logs", "--lines", "-1"],
        ["logs", "--since", "yesterday-ish"],
        ["cache", "clear", "--older-than", "soon"],
        ["health", "--min-cert-days", "x"],
        ["sandbox", "up", "--hosts", "0"],
        ["rollback", "1.0", "2.0"],
        ["nosuchcommand"],
    ],
)
def test_usage_errors_exit_2_without_traceback(invoke, local_inventory, args) -> None:
    result = invoke("-i", str(local_inventory), *args)
    assert result.exit_code == 2
    no_traceback(result)


def test_cache_inspect_rejects_what_is_neither_key_nor_file(invoke, local_inventory) -> None:
    result = invoke("-i", str(local_inventory), "cache", "inspect", "not-a-key")
    assert result.exit_code == 3
    assert "neither a local file nor a cache key" in result.stderr


def test_deploy_from_missing_path_is_exit_3(invoke, local_inventory) -> None:
    result = invoke("-i", str(local_inventory), "deploy", "--from", "/nonexistent/x.whl")
    assert result.exit_code == 3
    assert "--from /nonexistent/x.whl: no such file or directory" in result.stderr


def test_cache_clear_asks_and_aborts_on_no(invoke, local_inventory, monkeypatch) -> None:
    called = []
    monkeypatch.setattr(cache_clear_command, "cache_clear", lambda *a, **k: called.append(1))
    result = invoke("-i", str(local_inventory), "cache", "clear", input="n\n")
    assert result.exit_code == 1 and not called
    assert "Remove ALL entries" in result.output


def test_status_json_shape_from_a_real_run(invoke, local_inventory) -> None:
    result = invoke("-i", str(local_inventory), "status", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    (host,) = data["hosts"]
    assert set(host) == {"host", "service", "version", "nginx", "certificate", "disk", "cache"}
    assert host["host"] == "local-1"
    assert set(host["service"]) == {"state", "sub_state", "since", "uptime_seconds"}


def test_releases_json_shape_from_a_real_run(invoke, local_inventory) -> None:
    result = invoke("-i", str(local_inventory), "releases", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "hosts": [{"host": "local-1", "current": None, "releases": []}],
        "versions": {"none": ["local-1"]},
        "drift": False,
    }


def test_health_of_a_host_without_the_service_is_exit_1_with_json(invoke, local_inventory) -> None:
    result = invoke("-i", str(local_inventory), "health", "--json", "--no-public")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["healthy"] is False
    (host,) = data["hosts"]
    names = [c["name"] for c in host["checks"]]
    assert names == ["service", "nginx", "local_endpoint", "certificate", "disk", "cache_writable"]
    assert all(set(c) == {"name", "ok", "detail"} for c in host["checks"])
    assert result.stderr.strip().startswith("error: unhealthy: local-1: service")


def test_cache_stats_json_passes_the_admin_tool_through(
    invoke, local_inventory, monkeypatch
) -> None:
    stats = {"entries": 2, "bytes": 100, "hit_rate": 0.5, "model_calls": 2, "cost_spent_usd": 0.1}
    monkeypatch.setattr(
        Target, "reports", lambda self, playbook, **kw: {"local-1": {"rc": 0, "result": stats}}
    )
    result = invoke("-i", str(local_inventory), "cache", "stats", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"hosts": [{"host": "local-1", **stats}]}


def test_play_failure_is_one_line_naming_task_and_host(invoke, local_inventory) -> None:
    result = invoke("-i", str(local_inventory), "logs", "--unit", "access")
    assert result.exit_code == 1
    first = result.stderr.strip().splitlines()[0]
    assert first == (
        "error: logs failed on local-1 at task 'Read the logs': "
        "non-zero return code 3: no log file /var/log/iris/access.log on this host"
    )
    no_traceback(result)


def test_unreachable_host_exit_4(invoke, tmp_path) -> None:
    inv = tmp_path / "hosts.ini"
    inv.write_text(
        "[iris]\ngone ansible_host=127.0.0.1 ansible_port=1 "
        "ansible_ssh_common_args='-o BatchMode=yes -o StrictHostKeyChecking=no'\n"
    )
    result = invoke("-i", str(inv), "status")
    assert result.exit_code == 4
    assert result.stderr.startswith("error: SSH refused by gone")


def test_shell_completion_script_is_generated() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "irisctl")],
        env={"_IRISCTL_COMPLETE": "bash_source", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert "_irisctl_completion" in done.stdout


def test_version_option(invoke) -> None:
    assert "irisctl, version" in invoke("--version").output


def test_cli_object_is_the_console_script_entry() -> None:
    assert cli.name in ("cli", "irisctl")
