"""The event stream of real ansible-runner runs (against localhost) -> results and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from irisctl.errors import (
    EXIT_CONFIG,
    EXIT_LOCKED,
    EXIT_UNREACHABLE,
    ConfigError,
    DeployLockedError,
    HostUnreachableError,
    PlayFailedError,
)
from irisctl.runner import PlayEvent, failure_message, run_playbook

REPORTING = """
- name: Reporting play
  hosts: iris
  gather_facts: false
  tasks:
    - name: Change something harmless
      ansible.builtin.command: "true"
      changed_when: true
    - name: Report
      ansible.builtin.debug:
        var: iris_report
      vars:
        iris_report: {answer: 42, host: "{{ inventory_hostname }}"}
"""

FAILING = """
- name: Failing play
  hosts: iris
  gather_facts: false
  tasks:
    - name: Check the release
      ansible.builtin.fail:
        msg: ["release 9.9 is unhealthy: HTTP 503", "journal: worker crashed", "journal: bye"]
"""

LOCKED = """
- name: Locked play
  hosts: iris
  gather_facts: false
  tasks:
    - name: Report who holds the lock
      ansible.builtin.debug:
        var: iris_report
      vars:
        iris_report:
          lock_refused:
            {holder: alice@laptop, since: "2026-01-01T10:00:00Z", version: 1.2.3, age_seconds: 7}
    - name: Fail with words that say nothing about a lock
      ansible.builtin.fail:
        msg: something went wrong
"""

RESCUED = """
- name: Rescued play
  hosts: iris
  gather_facts: false
  tasks:
    - name: Try and recover
      block:
        - name: Fail first
          ansible.builtin.fail:
            msg: transient
      rescue:
        - name: Recover
          ansible.builtin.debug:
            var: iris_report
          vars:
            iris_report: {recovered: true}
"""


def test_report_and_progress_events_come_from_the_event_stream(
    local_inventory: Path, playbook
) -> None:
    events: list[PlayEvent] = []
    result = run_playbook(str(playbook(REPORTING)), local_inventory, on_event=events.append)
    assert result.ok
    assert result.reports == {"local-1": {"answer": 42, "host": "local-1"}}
    assert result.hosts["local-1"].changed == 1
    assert [e.task for e in events if e.kind == "task"] == ["Change something harmless", "Report"]
    changed = [e for e in events if e.kind == "changed"]
    assert changed and changed[0].host == "local-1"
    assert all(b.elapsed >= a.elapsed for a, b in zip(events, events[1:], strict=False))


def test_failed_task_names_task_host_and_reason_with_details(
    local_inventory: Path, playbook
) -> None:
    with pytest.raises(PlayFailedError) as caught:
        run_playbook(str(playbook(FAILING)), local_inventory)
    message = str(caught.value)
    assert "on local-1 at task 'Check the release'" in message
    assert "release 9.9 is unhealthy: HTTP 503" in message
    assert caught.value.details == ["journal: worker crashed", "journal: bye"]


def test_lock_refusal_report_becomes_deploy_locked_error_with_data(
    local_inventory: Path, playbook
) -> None:
    with pytest.raises(DeployLockedError) as caught:
        run_playbook(str(playbook(LOCKED)), local_inventory)
    assert caught.value.exit_code == EXIT_LOCKED
    assert "by alice@laptop since 2026-01-01T10:00:00Z, 7 s ago" in str(caught.value)
    assert caught.value.data["lock"]["holder"] == "alice@laptop"
    assert caught.value.data["host"] == "local-1"


def test_rescued_failure_does_not_fail_the_run(local_inventory: Path, playbook) -> None:
    result = run_playbook(str(playbook(RESCUED)), local_inventory)
    assert result.ok and result.reports["local-1"] == {"recovered": True}


@pytest.mark.parametrize("strategy", ["linear", "mitogen_linear"])
def test_ssh_refused_is_exit_4(tmp_path: Path, playbook, strategy: str) -> None:
    inventory = tmp_path / "refused.ini"
    inventory.write_text(
        "[iris]\nrefuser ansible_host=127.0.0.1 ansible_port=1 ansible_user=nobody "
        "ansible_ssh_common_args='-o BatchMode=yes -o StrictHostKeyChecking=no'\n"
    )
    body = REPORTING.replace(
        "  gather_facts: false", f"  gather_facts: false\n  strategy: {strategy}"
    )
    with pytest.raises(HostUnreachableError) as caught:
        run_playbook(str(playbook(body)), inventory)
    assert caught.value.exit_code == EXIT_UNREACHABLE
    assert str(caught.value).startswith("SSH refused by refuser")


def test_limit_matching_nothing_is_a_config_error(local_inventory: Path, playbook) -> None:
    with pytest.raises(ConfigError) as caught:
        run_playbook(str(playbook(REPORTING)), local_inventory, limit="nosuchhost")
    assert caught.value.exit_code == EXIT_CONFIG
    assert "no host matched --limit nosuchhost" in str(caught.value)


def test_failure_message_of_a_command_uses_its_stderr() -> None:
    message, details = failure_message(
        {"msg": "non-zero return code", "rc": 2, "stderr": "line one\nfatal: no such file"}
    )
    assert message == "non-zero return code 2: fatal: no such file"
    assert details == ["line one"]


def test_a_play_matching_nobody_beside_one_that_ran_is_no_error() -> None:
    """site.yml on a single host: its store and balancer plays match no host."""
    from irisctl.errors import ConfigError
    from irisctl.runner import HostStats, PlayResult, raise_for_result

    ran = PlayResult("site", 0, "successful", 1.0, hosts={"web-1": HostStats(ok=3)})
    ran.no_hosts_matched = True
    raise_for_result(ran)
    nobody = PlayResult("site", 0, "successful", 1.0)
    nobody.no_hosts_matched = True
    with pytest.raises(ConfigError, match="no host matched"):
        raise_for_result(nobody)


# Each shell task prints $PPID: the process that ran its module.
INTERPRETER_PIDS = """
- name: Interpreter of each task
  hosts: iris
  gather_facts: false
  become: false  # as in playbooks/aws.yml
  strategy: {strategy}
  tasks:
    - name: Task 1
      ansible.builtin.shell: echo $PPID
      changed_when: false
      register: task_1
    - name: Task 2
      ansible.builtin.shell: echo $PPID
      changed_when: false
      register: task_2
    - name: Report
      ansible.builtin.debug:
        var: iris_report
      vars:
        iris_report: ['{{{{ task_1.stdout }}}}', '{{{{ task_2.stdout }}}}']
"""


@pytest.mark.parametrize("strategy", ["linear", "mitogen_linear"])
def test_the_busiest_plays_run_every_module_of_a_host_in_one_interpreter(
    local_inventory: Path, playbook, strategy: str
) -> None:
    """aws.yml, site.yml and deploy.yml name the project's Mitogen strategy (plugins/strategy):
    there, two tasks run in the same process; with Ansible's own, each task has its own."""
    import yaml

    for name in ("aws.yml", "site.yml", "deploy.yml"):
        plays = yaml.safe_load((Path(__file__).parents[2] / "playbooks" / name).read_text())
        assert {play["strategy"] for play in plays} == {"mitogen_linear"}, name
    result = run_playbook(
        str(playbook(INTERPRETER_PIDS.format(strategy=strategy))), local_inventory
    )
    first, second = result.reports["local-1"]
    assert first.isdigit() and second.isdigit()
    assert (first == second) == (strategy == "mitogen_linear")
