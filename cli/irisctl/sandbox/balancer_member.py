"""A play running one of the load_balancer role's member entry points (drain, enable) for one
app host, delegated to the balancer exactly as a rolling deploy runs it (roles/release
switch.yml). Used by the fleet stories and bench/fleet_bench.py."""

from __future__ import annotations

from typing import Any


def member_play(entry: str, member: str, **extra: object) -> list[dict[str, Any]]:
    return [
        {
            "name": f"Load balancer {entry}",
            "hosts": member,
            "gather_facts": False,
            "become": True,
            "tasks": [
                {
                    "name": f"Run load_balancer {entry}",
                    "ansible.builtin.include_role": {
                        "name": "load_balancer",
                        "tasks_from": entry,
                        "apply": {"delegate_to": "{{ groups['iris_balancer'][0] }}"},
                    },
                    "vars": {"load_balancer_member": "{{ inventory_hostname }}", **extra},
                }
            ],
        }
    ]
