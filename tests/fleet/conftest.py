"""A fleet on real systemd hosts: two app hosts, one cache store (Redis) and one load balancer
(HAProxy), brought up once for the whole run and converged once with site.yml, after which each
story works through the balancer. Skips with one line where hosts cannot run.

On its own (``pytest tests/fleet``) it brings up a fleet sandbox and removes it afterwards. With
``IRIS_FLEET_JOIN_SANDBOX=1`` (``make test``, beside ``pytest tests/hosts``) it joins the sandbox
the single-host run brings up instead, with hosts and a model stand-in of its own, so both
runs go side by side; the single-host run waits for it before it removes the sandbox.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "hosts"))  # host_helpers

from fleet_helpers import Fleet  # noqa: E402
from host_helpers import BROKEN, V1, V2, build_release, mark_host_tests  # noqa: E402
from irisctl.sandbox import hosts, stack  # noqa: E402

APP_HOSTS = 2


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mark_host_tests(config, items, Path(__file__).parent)


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """The fleet, converged: site.yml on every host (app hosts on release V1)."""
    joining = os.environ.get("IRIS_FLEET_JOIN_SANDBOX") == "1"
    if not joining and stack.sandbox_status() is not None:
        pytest.skip("a sandbox is already up (another run owns it): `irisctl sandbox down` first")
    workdir = tmp_path_factory.mktemp("fleet")
    started = time.monotonic()
    releases = {v: build_release(workdir / f"release-{v}", v) for v in (V1, V2, BROKEN)}
    built = time.monotonic()
    if joining:
        info = stack.join_as_fleet(APP_HOSTS, workdir / "inventory" / "hosts.ini")
    else:
        info = stack.sandbox_up(APP_HOSTS, inventory_path=stack.default_inventory(), fleet=True)
    try:
        roots = workdir / "pebble-roots.pem"
        roots.write_text(hosts.pebble_roots())
        box = Fleet(info=info, workdir=workdir, releases=releases, pebble_roots=roots)
        box.timings["build releases"] = built - started
        box.timings["sandbox up"] = time.monotonic() - built
        run = box.play(
            "site.yml", service_wheelhouse_dir=str(releases[V1].path), service_version=V1
        )
        box.converges.append(run)
        if run.rc != 0:
            pytest.fail(f"fleet converge failed: {run.explain()}")
        yield box
        box.print_timings("fleet")
    finally:
        if joining:
            stack.leave_fleet()
        else:
            stack.sandbox_down()
