"""irisctl deploy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from irisctl import render
from irisctl.context import Options, json_option, pass_options
from irisctl.errors import EXIT_CODES_HELP
from irisctl.ops.deploy import deploy, raise_if_unhealthy

F = TypeVar("F", bound=Callable[..., Any])


def release_options(func: F) -> F:
    """--version / --from / --check, shared by deploy and provision."""
    func = click.option(
        "--check",
        is_flag=True,
        help="Show what would change (ansible --check --diff); change nothing.",
    )(func)
    func = click.option(
        "--from",
        "from_path",
        type=click.Path(path_type=Path),
        metavar="PATH",
        help="Ship a prebuilt iris_service wheel or wheelhouse directory instead of building.",
    )(func)
    func = click.option(
        "--version",
        "version",
        metavar="V",
        help="Stamp the built wheel with this version (default: the source's version).",
    )(func)
    return func


def batch_size_option(func: F) -> F:
    """--batch-size, shared by deploy and rollback."""
    return click.option(
        "--batch-size",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        metavar="N",
        help="On a fleet: how many hosts switch at a time (the rest keep serving).",
    )(func)


def show_result(data: dict[str, Any], as_json: bool, what: str) -> None:
    if as_json:
        render.emit_json(data)
    elif data.get("check"):
        render.check_summary(data)
    else:
        render.summary(data)
    if not data.get("check"):
        raise_if_unhealthy(data, what)


@click.command("deploy", epilog=EXIT_CODES_HELP)
@release_options
@click.option(
    "--release-lock",
    is_flag=True,
    help="Release a stale deploy lock held by someone else, then deploy.",
)
@batch_size_option
@json_option
@pass_options
def command(
    opts: Options,
    version: str | None,
    from_path: Path | None,
    check: bool,
    release_lock: bool,
    batch_size: int,
    as_json: bool,
) -> None:
    """Build the service wheel and ship it with the deploy play, health-gated.

    The host keeps the previous release; when the new one is unhealthy it is rolled back
    automatically and irisctl prints the failing check and the last lines of the service
    log, then exits non-zero. A deploy lock on the host names who holds it and since when.

    On a fleet the deploy rolls, --batch-size hosts at a time: each host leaves the load
    balancer, switches, passes its health gate and rejoins before the next batch starts. A
    batch that fails its gate is rolled back and stops the roll; the hosts after it keep
    the release they had.

    \b
    Examples:
      irisctl deploy                      # version from service/iris_service/_version.py
      irisctl deploy --version 1.4.0
      irisctl deploy --from dist/iris_service-1.4.0-py3-none-any.whl
      irisctl deploy --check              # what would change, nothing changed
      irisctl deploy --release-lock       # a crashed deploy left its lock behind
      irisctl deploy --batch-size 2       # a fleet, two hosts at a time
    """
    data = deploy(
        opts.target(),
        version=version,
        from_path=from_path,
        check=check,
        release_lock=release_lock,
        batch_size=batch_size,
        on_step=render.step,
    )
    show_result(data, as_json, f"deployed {data.get('version')}")
