"""Real systemd hosts for the whole run: one sandbox, brought up once and shared by every test.

converge -> idempotence -> verify (test_converge.py) -> edge (test_edge.py), irisctl end to end
(test_irisctl.py) and lifecycle (test_lifecycle.py), after Molecule's sequence: every host is
converged once per run, then each story works on a host of its own. Skips with one line where
hosts cannot run (no root, no systemd-nspawn).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from host_helpers import BREAKAGES, HOST_COUNT, V1, V2, Sandbox, build_release, mark_host_tests
from irisctl.sandbox import hosts, stack


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mark_host_tests(config, items, Path(__file__).parent)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    if stack.sandbox_status() is not None:
        pytest.skip("a sandbox is already up (another run owns it): `irisctl sandbox down` first")
    workdir = tmp_path_factory.mktemp("hosts")
    started = time.monotonic()
    releases = {
        version: build_release(workdir / f"release-{version}", version)
        for version in (V1, V2, *BREAKAGES)
    }
    built = time.monotonic()
    # The sandbox's own inventory, as `irisctl sandbox up` writes it: irisctl recognises it
    # (and verifies the hosts' certificates against the sandbox's ACME root by itself).
    info = stack.sandbox_up(HOST_COUNT, inventory_path=stack.default_inventory())
    try:
        roots = workdir / "pebble-roots.pem"
        roots.write_text(hosts.pebble_roots())
        box = Sandbox(info=info, workdir=workdir, releases=releases, pebble_roots=roots)
        box.timings["build releases"] = built - started
        box.timings["sandbox up"] = time.monotonic() - built
        yield box
        timings = ", ".join(f"{k}={v:.1f}" for k, v in box.timings.items())
        print(f"\nhost test timings (s): {timings}")
    finally:
        # the fleet stories may have joined this sandbox (make test runs them side by side)
        staying = stack.wait_for_guests()
        if staying:
            print(f"\ntaking the sandbox down while {', '.join(staying)} still runs")
        stack.sandbox_down()


@pytest.fixture(scope="session")
def converged(sandbox: Sandbox) -> Sandbox:
    """site.yml twice on every host: the first run must succeed, the second is kept for the
    idempotence test."""
    release = sandbox.releases[V1]
    for _ in range(2):
        run = sandbox.play("site.yml", service_wheelhouse_dir=str(release.path), service_version=V1)
        sandbox.converges.append(run)
        if run.rc != 0:
            pytest.fail(f"converge failed: {run.explain()}")
    return sandbox
