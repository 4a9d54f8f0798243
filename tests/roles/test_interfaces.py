"""Each role's declared interface (meta/argument_specs.yml), checked by ansible at the start of
an entry point; values other roles read defined once, in their owner's defaults; OS family
values that never outrank the inventory."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from irisctl.paths import project_root
from role_helpers import role_defaults, run_play

ROLES_DIR = project_root() / "roles"
ROLES = sorted(p.name for p in ROLES_DIR.iterdir() if (p / "tasks").is_dir())
# Task files that only their own role includes (the rest are entry points other plays use).
INTERNAL_TASKS = {
    "service": {"config", "layout", "packages", "preflight", "running", "vars"},
    "release": {"install", "switch"},
    "nginx": {"tls", "config", "hardening", "vars"},
    "certbot": {"issue", "renew", "trust", "vars"},
    "cloudwatch_agent": {"vars"},
    "ssm_agent": {"vars"},
    "cache_backup": {"enabled", "disabled"},
    "aws_deployment": {"credentials"},
    "aws_secret": set(),
    "aws_backup_bucket": set(),
    "aws_instance_role": set(),
    "aws_network": set(),
    "aws_instance": {"listed"},
    "aws_dns": set(),
    "aws_alarms": {"definitions"},
    "aws_dashboard": set(),
    "host_metrics": set(),
    "aws_load_balancer": set(),
    "aws_cache_store": set(),
    "cache_store": {"config", "hardening", "vars"},
    "load_balancer": {"acme", "config", "hardening", "tls", "vars"},
}


def specs(role: str) -> dict:
    path = ROLES_DIR / role / "meta" / "argument_specs.yml"
    return yaml.safe_load(path.read_text())["argument_specs"]


def owned_elsewhere(role: str) -> set[str]:
    """Variables the role's entry points read that another role's defaults define."""
    names = {name for entry in specs(role).values() for name in entry["options"]}
    return {n for n in names if n not in (role_defaults(role) or {}) and not n.startswith("iris_")}


def all_defaults() -> dict[str, dict]:
    return {role: role_defaults(role) or {} for role in ROLES}


def test_every_role_is_covered() -> None:
    assert set(ROLES) == set(INTERNAL_TASKS)


@pytest.mark.parametrize("role", ROLES)
def test_every_entry_point_is_declared(role: str) -> None:
    tasks = {p.stem for p in (ROLES_DIR / role / "tasks").glob("*.yml")}
    assert set(specs(role)) == tasks - INTERNAL_TASKS[role]


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_declared_with_its_type_default_and_description(role: str) -> None:
    defaults = role_defaults(role) or {}
    declared = {}
    for entry in specs(role).values():
        for name, option in entry["options"].items():
            assert option.get("type"), f"{role}: {name} has no type"
            assert option.get("description"), f"{role}: {name} has no description"
            assert "default" in option or option.get("required") or name not in defaults, name
            declared.setdefault(name, option)
    assert set(defaults) <= set(declared), set(defaults) - set(declared)
    for name, value in defaults.items():
        assert declared[name]["default"] == value, f"{role}: {name} differs from defaults/main.yml"


@pytest.mark.parametrize("role", ROLES)
def test_a_value_another_role_owns_is_required_and_defined_by_exactly_one_role(role: str) -> None:
    defaults = all_defaults()
    os_values = {
        path.stem: {k.lstrip("_") for k in yaml.safe_load(path.read_text())}
        for path in (ROLES_DIR / role / "vars").glob("*.yml")
    }
    for name in owned_elsewhere(role):
        if any(name in values for values in os_values.values()):
            continue  # an OS family value of this role (vars/<family>.yml)
        owners = [r for r, values in defaults.items() if name in values]
        assert len(owners) == 1, f"{role} reads {name}, defined by {owners or 'no role'}"
        for entry in specs(role).values():
            option = entry["options"].get(name)
            if option:
                assert option.get("required") and "default" not in option, name


def test_no_value_is_defined_by_two_roles() -> None:
    seen: dict[str, str] = {}
    for role, values in all_defaults().items():
        for name in values:
            assert name not in seen, f"{name} in {seen.get(name)} and {role}"
            seen[name] = role


def test_no_role_or_playbook_repeats_a_path_or_address_another_role_owns() -> None:
    read_elsewhere = set().union(*(owned_elsewhere(role) for role in ROLES))
    literals = {
        (value, f"roles/{role}/defaults/main.yml")
        for role in ROLES
        for name, value in (role_defaults(role) or {}).items()
        if name in read_elsewhere
        and isinstance(value, str)
        and value.startswith(("/", "127.", "tcp://"))
        and "{{" not in value
    }
    files = [*ROLES_DIR.rglob("*.yml"), *ROLES_DIR.rglob("*.j2")]
    files += list((project_root() / "playbooks").rglob("*.yml"))
    for path in files:
        if path.name == "argument_specs.yml":
            continue
        text = path.read_text()
        for literal, owner in literals:
            if str(path).endswith(owner):
                continue
            assert not re.search(rf"{re.escape(literal)}(?![\w.-])", text), f"{literal} in {path}"


def validation_play(role: str, entry: str, **role_vars: object) -> list[dict]:
    """A play that runs one entry point with vars that are wrong on purpose; any task of the
    role that ran would leave a file behind, so the test can tell validation stopped it first."""
    return [
        {
            "name": "Validate a role entry point",
            "hosts": "local",
            "gather_facts": False,
            "become": False,
            "tasks": [
                {
                    "name": "Read the host layout",
                    "ansible.builtin.import_role": {"name": "service", "tasks_from": "read_layout"},
                },
                {
                    "name": "Run the entry point",
                    "ansible.builtin.include_role": {"name": role, "tasks_from": entry},
                    "vars": role_vars,
                },
            ],
        }
    ]


def role_tasks_run(output: str, role: str) -> list[str]:
    """Names of the role's tasks that started, argument validation left out."""
    started = re.findall(rf"^TASK \[{role} : (.+?)\] \*+$", output, re.MULTILINE)
    return [name for name in started if not name.startswith("Validating arguments")]


@pytest.fixture
def local_inventory(tmp_path: Path) -> str:
    path = tmp_path / "hosts.ini"
    path.write_text("[all]\nlocal ansible_connection=local ansible_become=false\n")
    return str(path)


def test_a_wrong_type_stops_the_play_before_any_task_naming_the_variable(
    tmp_path: Path, local_inventory: str
) -> None:
    root = tmp_path / "iris"
    play = validation_play("release", "prune", release_keep="three")
    done = run_play(tmp_path, play, inventory=local_inventory, service_root=str(root))
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Validation of arguments failed" in output
    assert re.search(r"argument 'release_keep' is of type str", output), output
    assert role_tasks_run(output, "release") == []


def test_the_same_entry_point_with_a_right_type_runs(tmp_path: Path, local_inventory: str) -> None:
    root = tmp_path / "iris"
    (root / "releases").mkdir(parents=True)
    play = validation_play("release", "prune", release_keep="3")
    done = run_play(tmp_path, play, inventory=local_inventory, service_root=str(root))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert role_tasks_run(done.stdout, "release")[0] == "Find installed releases"


def test_a_missing_required_variable_stops_the_play_naming_it(
    tmp_path: Path, local_inventory: str
) -> None:
    play = validation_play("release", "unlock")
    del play[0]["tasks"][0]  # no service layout: service_deploy_lock_path is missing
    done = run_play(tmp_path, play, inventory=local_inventory)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "missing required arguments: service_deploy_lock_path" in output, output
    assert role_tasks_run(output, "release") == []


# ------------------------------------------------------------ OS values vs inventory ---
OS_OVERRIDES = {
    "service": ("service_packages", ["python3.11-custom"]),
    "nginx": ("nginx_user", "edge"),
    "certbot": ("certbot_timer", "acme.timer"),
    "cloudwatch_agent": ("cloudwatch_agent_package", "cw-agent-custom"),
    "ssm_agent": ("ssm_agent_service", "ssm-custom"),
}


def test_the_inventory_wins_over_os_family_values_host_by_host(tmp_path: Path) -> None:
    """Two hosts of the same OS family: one overrides one OS value per role in the inventory
    and sees it, the other gets the OS family's value."""
    overridden = " ".join(f"{name}='{json.dumps(value)}'" for name, value in OS_OVERRIDES.values())
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        "[iris]\n"
        "custom ansible_connection=local ansible_become=false " + overridden + "\n"
        "plain ansible_connection=local ansible_become=false\n"
    )
    out = tmp_path / "seen"
    out.mkdir()
    tasks: list[dict] = []
    for role in OS_OVERRIDES:
        tasks.append(
            {
                "name": f"Load {role}'s OS family values",
                "ansible.builtin.include_role": {"name": role, "tasks_from": "vars"},
            }
        )
    names = [name for name, _ in OS_OVERRIDES.values()]
    tasks.append(
        {
            "name": "Record what each host sees",
            "ansible.builtin.copy": {
                "content": "{{ dict(names | zip(names | map('extract', vars)))"
                " | combine({'os_family': ansible_facts['os_family']}) | to_json }}",
                "dest": f"{out}/{{{{ inventory_hostname }}}}.json",
                "mode": "0644",
            },
            "vars": {"names": names},
        }
    )
    play = [
        {
            "name": "OS values",
            "hosts": "iris",
            "gather_facts": True,
            "gather_subset": ["min"],
            "become": False,
            "tasks": tasks,
        }
    ]
    done = run_play(tmp_path, play, inventory=str(inventory))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    custom = json.loads((out / "custom.json").read_text())
    plain = json.loads((out / "plain.json").read_text())
    for role, (name, value) in OS_OVERRIDES.items():
        assert custom[name] == value, name
        family_file = ROLES_DIR / role / "vars" / f"{plain['os_family']}.yml"
        os_values = yaml.safe_load(family_file.read_text())
        assert plain[name] == os_values[f"__{name}"], name
