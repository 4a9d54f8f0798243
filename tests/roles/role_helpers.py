"""Host-free role tests: render role templates with the real ansible-playbook, locally."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from irisctl.paths import project_root

SCHEMAS = project_root().parent / "shared" / "schemas"


def shared_schema(name: str) -> dict:
    """A reference schema from ../shared/schemas (never copied into the project)."""
    path = SCHEMAS / name
    if not path.is_file():
        pytest.skip(f"reference schema {path} is absent (../shared is not checked out here)")
    return json.loads(path.read_text())


# Roles whose defaults own values other roles read (service_bind, certbot_webroot, ...).
OWNER_ROLES = ("service", "nginx", "certbot")


def role_defaults(role: str) -> dict:
    return yaml.safe_load((project_root() / "roles" / role / "defaults" / "main.yml").read_text())


def run_play(tmp_path: Path, play: list[dict], inventory: str = "localhost,", **extra_vars: object):
    """Run ``play`` with the real ansible-playbook from the project root (its ansible.cfg and
    roles); returns the finished process, whatever its exit status."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump(play, sort_keys=False))
    ansible = Path(sys.executable).with_name("ansible-playbook")
    argv = [str(ansible), "-i", inventory, str(playbook)]
    argv += ["-e", json.dumps({"ansible_python_interpreter": sys.executable, **extra_vars})]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0")
    return subprocess.run(
        argv, cwd=project_root(), env=env, capture_output=True, text=True, timeout=120
    )


def render_role_template(
    tmp_path: Path, role: str, template: str, extra_vars: dict | None = None
) -> str:
    """Render roles/ROLE/templates/TEMPLATE with the role's defaults, and those of the roles
    whose values it reads, through ansible-playbook on localhost (no become, no facts), as the
    role's template task would in site.yml."""
    dest = tmp_path / "rendered"
    play = [
        {
            "name": "Render a role template",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "become": False,
            "vars_files": [
                str(project_root() / "roles" / name / "defaults" / "main.yml")
                for name in (*[r for r in OWNER_ROLES if r != role], role)
            ],
            "tasks": [
                {
                    "name": "Render",
                    "ansible.builtin.template": {
                        "src": str(project_root() / "roles" / role / "templates" / template),
                        "dest": str(dest),
                        "mode": "0644",
                    },
                }
            ],
        }
    ]
    done = run_play(tmp_path, play, **(extra_vars or {}))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return dest.read_text()
