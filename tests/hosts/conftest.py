"""Real systemd hosts for the whole run: one sandbox, brought up once and shared by every test.

converge -> idempotence -> verify (test_converge.py) -> edge (test_edge.py), irisctl end to end
(test_irisctl.py) and lifecycle (test_lifecycle.py), after Molecule's sequence: every host is
converged once per run, then each story works on a host of its own. Skips with one line where
hosts cannot run (no root, no systemd-nspawn).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from host_helpers import (
    BREAKAGES,
    HOST_COUNT,
    V1,
    V2,
    Sandbox,
    build_release,
    hand_over,
    mark_host_tests,
    take_over,
)
from irisctl.sandbox import hosts, stack

# Set by `make test` (see host_helpers.hand_over): the directory both runs share, and whether
# this run is the guest that takes over the owner's converged hosts.
SHARE = os.environ.get("IRIS_HOSTS_SHARE")
JOINING = SHARE is not None and os.environ.get("IRIS_HOSTS_JOIN") == "1"
GUEST_NAME = "single-host"
# The owner brings the sandbox up and converges 3 hosts twice first.
TAKE_OVER_WAIT_S = 1500


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mark_host_tests(config, items, Path(__file__).parent)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    if JOINING:
        yield from joined_sandbox(tmp_path_factory.mktemp("hosts"))
        return
    if stack.sandbox_status() is not None:
        refusal = "a sandbox is already up (another run owns it): `irisctl sandbox down` first"
        if SHARE:
            hand_over(Path(SHARE), None, refusal)
        pytest.skip(refusal)
    workdir = tmp_path_factory.mktemp("hosts")
    started = time.monotonic()
    releases = {
        version: build_release(workdir / f"release-{version}", version)
        for version in (V1, V2, *BREAKAGES)
    }
    built = time.monotonic()
    # The sandbox's own inventory, as `irisctl sandbox up` writes it: irisctl recognises it
    # (and verifies the hosts' certificates against the sandbox's ACME root by itself).
    try:
        info = stack.sandbox_up(HOST_COUNT, inventory_path=stack.default_inventory())
    except Exception as exc:
        if SHARE:
            hand_over(Path(SHARE), None, f"sandbox up failed: {exc}")
        raise
    try:
        roots = workdir / "pebble-roots.pem"
        roots.write_text(hosts.pebble_roots())
        box = Sandbox(info=info, workdir=workdir, releases=releases, pebble_roots=roots)
        box.timings["build releases"] = built - started
        box.timings["sandbox up"] = time.monotonic() - built
        yield box
        box.print_timings("host")
    finally:
        # the fleet stories and the guest run may have joined (make test runs them side by side)
        staying = stack.wait_for_guests()
        if staying:
            print(f"\ntaking the sandbox down while {', '.join(staying)} still runs")
        stack.sandbox_down()


def joined_sandbox(workdir: Path) -> Iterator[Sandbox]:
    """The guest run: the owner's sandbox, once converged; the owner waits for it to end."""
    stack.stay_as_guest(GUEST_NAME)
    try:
        box = take_over(Path(SHARE or "."), workdir, TAKE_OVER_WAIT_S)
        yield box
        box.print_timings("host")
    finally:
        stack.leave_as_guest(GUEST_NAME)


@pytest.fixture(scope="session")
def converged(sandbox: Sandbox) -> Sandbox:
    """site.yml twice on every host: the first run must succeed, the second is kept for the
    idempotence test. A guest run gets the hosts the owner converged."""
    if JOINING:
        return sandbox
    release = sandbox.releases[V1]
    error = None
    for _ in range(2):
        run = sandbox.play("site.yml", service_wheelhouse_dir=str(release.path), service_version=V1)
        sandbox.converges.append(run)
        if run.rc != 0:
            error = f"converge failed: {run.explain()}"
            break
    if SHARE:
        hand_over(Path(SHARE), None if error else sandbox, error)
    if error:
        pytest.fail(error)
    return sandbox
