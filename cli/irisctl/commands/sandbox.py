"""irisctl sandbox up | down | status."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from irisctl import render
from irisctl.context import json_option
from irisctl.errors import EXIT_CODES_HELP, ConfigError, IrisctlError
from irisctl.inventory import sandbox_inventory


def _stack() -> Any:
    from irisctl.sandbox import hosts

    reason = hosts.unavailable_reason()
    if reason:
        raise ConfigError(f"sandbox unavailable: {reason}")
    try:
        from irisctl.sandbox import stack
    except ImportError as exc:
        raise ConfigError(f"sandbox support is not installed: {exc}") from exc
    return stack


def _call(func: Any, *args: Any) -> Any:
    from irisctl.sandbox.hosts import SandboxError

    try:
        return func(*args)
    except SandboxError as exc:
        raise IrisctlError(str(exc)) from exc


def _plain(value: Any) -> Any:
    """SandboxInfo (dataclasses, paths) as JSON-able data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def _show(info: Any, as_json: bool) -> None:
    data = _plain(info)
    if as_json:
        render.emit_json(data)
        return
    if not data:
        render.plain("no sandbox running")
        return
    for key, value in data.items():
        if key == "hosts":
            value = ", ".join(f"{h['name']} ({h['ip']})" for h in value)
        if key in ("store", "balancer"):
            if not value:
                continue  # a single host: no fleet
            value = f"{value['name']} ({value['ip']})"
        if key == "notes":
            for note in value:  # none: nothing to say
                render.plain(f"{'note':18} {note}")
            continue
        render.plain(f"{key:18} {render.value_text(value)}")


@click.group("sandbox", epilog=EXIT_CODES_HELP)
def command() -> None:
    """A local sandbox: real systemd hosts (systemd-nspawn), no AWS needed.

    The sandbox brings its own ACME CA (pebble), OpenAI stand-in and Secrets Manager
    (moto); its inventory is the default one for every other command. Needs root.

    \b
    Examples:
      irisctl sandbox up && irisctl provision && irisctl deploy
      irisctl status && irisctl health
      irisctl sandbox down
    """


@command.command("up", epilog=EXIT_CODES_HELP)
@click.option("--hosts", "count", type=click.IntRange(1, 8), default=1, show_default=True)
@json_option
def up(count: int, as_json: bool) -> None:
    """Create the sandbox hosts and write inventory/sandbox/hosts.ini.

    Two or more hosts make a fleet: the app hosts, plus a shared cache store (Redis) and a
    load balancer (HAProxy) in front of them, each a host of its own.

    \b
    Examples:
      irisctl sandbox up
      irisctl sandbox up --hosts 2 --json   # 2 app hosts + store + balancer
    """
    stack = _stack()
    fleet = count >= 2
    extra = " + a cache store and a load balancer" if fleet else ""
    render.step(f"bringing up {count} sandbox app host(s){extra}")
    info = _call(lambda: stack.sandbox_up(count, sandbox_inventory(), fleet=fleet))
    _show(info, as_json)


@command.command("down", epilog=EXIT_CODES_HELP)
@json_option
def down(as_json: bool) -> None:
    """Remove the sandbox hosts and their services.

    \b
    Examples:
      irisctl sandbox down
      irisctl sandbox down --json
    """
    stack = _stack()
    _call(stack.sandbox_down)
    if as_json:
        render.emit_json({"removed": True})
    else:
        render.plain("sandbox removed")


@command.command("status", epilog=EXIT_CODES_HELP)
@json_option
def status(as_json: bool) -> None:
    """Which sandbox hosts run, and where the inventory is.

    \b
    Examples:
      irisctl sandbox status --json
    """
    stack = _stack()
    _show(_call(stack.sandbox_status), as_json)
