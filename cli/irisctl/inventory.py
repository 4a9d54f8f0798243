"""The inventory: which one irisctl talks to, and its hosts as Ansible resolves them.

Which one: ``-i`` > ``IRISCTL_INVENTORY`` > config file > the sandbox's.
"""

from __future__ import annotations

import inspect
import os
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from irisctl.errors import ConfigError
from irisctl.paths import playbooks_dir, project_root

ENV_VAR = "IRISCTL_INVENTORY"
CONFIG_ENV_VAR = "IRISCTL_CONFIG"
CONFIG_NAME = "irisctl.toml"


def sandbox_inventory() -> Path:
    """Where ``irisctl sandbox up`` writes the sandbox inventory (the default inventory)."""
    return project_root() / "inventory" / "sandbox" / "hosts.ini"


def config_files() -> list[Path]:
    """Config files in the order they are read; the first one that exists wins."""
    explicit = os.environ.get(CONFIG_ENV_VAR)
    if explicit:
        return [Path(explicit)]
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return [Path.cwd() / CONFIG_NAME, project_root() / CONFIG_NAME, xdg / "irisctl" / "config.toml"]


@dataclass(frozen=True)
class ResolvedInventory:
    path: Path
    source: str  # "option", "environment", "config <file>" or "sandbox"

    @property
    def is_sandbox(self) -> bool:
        return self.path.resolve() == sandbox_inventory().resolve()


def _from_config() -> tuple[Path, Path] | None:
    for config in config_files():
        if not config.is_file():
            continue
        try:
            data = tomllib.loads(config.read_text())
        except (tomllib.TOMLDecodeError, OSError) as exc:
            raise ConfigError(f"config file {config} is not valid TOML: {exc}") from exc
        value = data.get("inventory")
        if value is None:
            continue
        if not isinstance(value, str):
            raise ConfigError(f"config file {config}: `inventory` must be a string path")
        path = Path(value).expanduser()
        # Relative paths in a config file are relative to that file, not to the cwd.
        return (path if path.is_absolute() else config.parent / path), config
    return None


def resolve_inventory(option: str | None) -> ResolvedInventory:
    """The inventory to use; raises ConfigError with the fix when there is none."""
    if option:
        candidate, source = Path(option).expanduser(), "option -i"
    elif os.environ.get(ENV_VAR):
        candidate, source = Path(os.environ[ENV_VAR]).expanduser(), f"${ENV_VAR}"
    elif (found := _from_config()) is not None:
        candidate, source = found[0], f"config {found[1]}"
    else:
        candidate = sandbox_inventory()
        if not candidate.exists():
            raise ConfigError(
                "no inventory: pass -i PATH, set IRISCTL_INVENTORY, "
                "or run `irisctl sandbox up` to create the sandbox"
            )
        return ResolvedInventory(candidate, "sandbox")
    if not candidate.exists():
        raise ConfigError(f"inventory {candidate} (from {source}) does not exist")
    return ResolvedInventory(candidate.resolve(), source)


def load_inventory(inventory: Path) -> tuple[Any, Any]:
    """Ansible's loader and inventory manager for ``inventory``, in-process, reading group_vars
    as the plays do."""
    os.environ.setdefault("ANSIBLE_CONFIG", str(project_root() / "ansible.cfg"))
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    loader = DataLoader()
    loader.set_basedir(str(playbooks_dir()))  # playbook group_vars, as for the plays (not cwd's)
    return loader, InventoryManager(loader=loader, sources=[str(inventory)])


def iris_hosts(
    inventory: Path, limit: str | None, defaults_files: Sequence[Path] = ()
) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(name, variables, templar) of each ``iris`` host, as Ansible resolves them for a play.

    In-process (no ansible-playbook child to clean up). ``defaults_files`` (role defaults)
    come first; then, with a play's precedence, ``playbooks/group_vars`` and the inventory.
    """
    from ansible.template import Templar
    from ansible.vars.manager import VariableManager

    loader, manager = load_inventory(inventory)
    if limit:
        manager.subset(limit)
    hosts = manager.get_hosts("iris")
    if not hosts:
        where = f"--limit {limit}" if limit else "the inventory's `iris` group"
        raise ConfigError(f"no host matched {where}")
    # Role files are templates Ansible trusts (2.19 renders only trusted strings; older
    # releases render every string and have no such option).
    load_options = {}
    if "trusted_as_template" in inspect.signature(loader.load_from_file).parameters:
        load_options["trusted_as_template"] = True
    defaults: dict[str, Any] = {}
    for path in defaults_files:
        defaults.update(loader.load_from_file(str(path), **load_options) or {})
    variables = VariableManager(loader=loader, inventory=manager)
    for host in hosts:
        values = {**defaults, **variables.get_vars(host=host)}
        yield host.name, values, Templar(loader=loader, variables=values)
