"""The whole local sandbox: ACME server, model and Secrets Manager stand-ins, and N hosts.

Used by ``irisctl sandbox up|down`` and by the host tests' session fixture. Everything it starts
is recorded in ``/var/lib/iris-sandbox/stack.json`` so that ``sandbox_down()`` can stop it from
another process later. Every service listens on the bridge address (10.231.0.1) or loopback only.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from irisctl.inventory import sandbox_inventory
from irisctl.paths import project_root
from irisctl.sandbox import hosts
from irisctl.sandbox.hosts import BRIDGE_ADDRESS, PEBBLE_DIRECTORY, Host, SandboxError, key_path

STATE_FILE = hosts.STATE_DIR / "stack.json"
LOG_DIR = hosts.STATE_DIR / "stack"
MODEL_PORT = 14080
MOTO_PORT = 14566
SECRET_ID = "iris/openai-api-key"
SECRET_VALUE = "sk-sandbox-not-a-real-key"
AWS_REGION = "us-east-2"
# The hosts' cache backups (the cache_backup role): a bucket in moto, reached through boto3's
# standard variables, credentials from moto's instance metadata (IMDSv2) as on EC2.
BACKUP_BUCKET = "iris-sandbox-cache-backups"
MOTO_URL = f"http://{BRIDGE_ADDRESS}:{MOTO_PORT}"
BACKUP_ENVIRONMENT = {
    "AWS_ENDPOINT_URL": MOTO_URL,
    "AWS_EC2_METADATA_SERVICE_ENDPOINT": f"{MOTO_URL}/",
}
FLEET_MODEL_PORT = 14081
FIRST_HOST_OCTET = 11
HOST_PREFIX = "iris-sandbox"
# A fleet (`sandbox up --hosts N`, N >= 2): the app hosts plus one shared cache store and one
# load balancer in front of them, on the same bridge (the fleet's private network).
STORE_HOST = Host(name=f"{HOST_PREFIX}-store", ip="10.231.0.30")
BALANCER_HOST = Host(name=f"{HOST_PREFIX}-lb", ip="10.231.0.31")
STORE_SECRET_ID = "iris/cache-store-password"
STORE_USER = "iris"
STORE_PORT = 6379
READY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class SandboxInfo:
    hosts: list[Host]
    inventory: Path
    model_url: str
    secrets_endpoint: str
    pebble_directory: str = PEBBLE_DIRECTORY
    ssh_key: Path = field(default_factory=key_path)
    notes: list[str] = field(default_factory=list)
    store: Host | None = None
    balancer: Host | None = None

    @property
    def machines(self) -> list[Host]:
        """Every sandbox host: the app hosts, then the store and the balancer of a fleet."""
        return [*self.hosts, *(h for h in (self.store, self.balancer) if h is not None)]

    @property
    def model_base_url(self) -> str:
        return f"{self.model_url}/v1" if self.model_url else ""


def default_inventory() -> Path:
    """Where the sandbox's inventory goes unless told otherwise: irisctl's default one."""
    return sandbox_inventory()


def sandbox_hosts(count: int) -> list[Host]:
    return [
        Host(name=f"{HOST_PREFIX}-{i}", ip=f"10.231.0.{FIRST_HOST_OCTET + i - 1}")
        for i in range(1, count + 1)
    ]


# ------------------------------------------------------------------------ processes ---
def _alive(record: dict[str, str | int]) -> bool:
    return hosts.process_start_time(int(record["pid"])) == record.get("start")


def _spawn(name: str, argv: list[str], env: dict[str, str] | None = None) -> dict[str, str | int]:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOG_DIR / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(
            argv,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stopped as a whole, immune to Ctrl-C
            cwd=project_root(),
        )
    return {
        "pid": proc.pid,
        "start": hosts.process_start_time(proc.pid) or "",
        "argv": " ".join(argv),
    }


def _stop(record: dict[str, str | int]) -> None:
    pid = int(record["pid"])
    if not _alive(record):
        return  # already gone (or the pid now belongs to someone else)
    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap when it is our own child
            if hosts.process_start_time(pid) is None:
                return
            time.sleep(0.05)


def _wait_port(host: str, port: int, name: str, record: dict[str, str | int]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if hosts.process_start_time(int(record["pid"])) is None:
            raise SandboxError(f"{name} exited at start, see {LOG_DIR / (name + '.log')}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SandboxError(f"{name} not listening on {host}:{port} after {READY_TIMEOUT_S:.0f}s")


def _moto_client(service: Any) -> Any:  # Any: one function for boto3's per-service clients
    """A boto3 client of the sandbox's moto (which accepts any credentials)."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=MOTO_URL,
        region_name=AWS_REGION,
        aws_access_key_id="sandbox",
        aws_secret_access_key="sandbox",
    )


def _start_moto(fleet: bool) -> dict[str, str | int]:
    record = _spawn(
        "moto",
        [sys.executable, "-m", "moto.server", "-H", BRIDGE_ADDRESS, "-p", str(MOTO_PORT)],
        # the AWS managed policies an instance role attaches (`irisctl aws up` on the sandbox)
        env={"MOTO_IAM_LOAD_MANAGED_POLICIES": "true"},
    )
    _wait_port(BRIDGE_ADDRESS, MOTO_PORT, "moto", record)
    client = _moto_client("secretsmanager")
    client.create_secret(Name=SECRET_ID, SecretString=SECRET_VALUE)
    if fleet:
        # The store's password exists only here: the store host gets its hash, app hosts read it
        # from Secrets Manager as they read the model key.
        _create_store_secret()
    _create_backup_bucket()
    return record


def _create_backup_bucket() -> None:
    """As the AWS playbook makes it: versioned, encrypted by default, no public access."""
    s3 = _moto_client("s3")
    s3.create_bucket(
        Bucket=BACKUP_BUCKET, CreateBucketConfiguration={"LocationConstraint": AWS_REGION}
    )
    s3.put_bucket_versioning(Bucket=BACKUP_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(
        Bucket=BACKUP_BUCKET,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    s3.put_public_access_block(
        Bucket=BACKUP_BUCKET,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )


def _start_model_standin(
    name: str = "model-standin", port: int = MODEL_PORT
) -> dict[str, str | int] | None:
    if importlib.util.find_spec("irisctl.sandbox.model_standin") is None:
        return None
    record = _spawn(
        name,
        [
            sys.executable,
            "-m",
            "irisctl.sandbox.model_standin",
            "--host",
            BRIDGE_ADDRESS,
            "--port",
            str(port),
        ],
    )
    try:
        _wait_port(BRIDGE_ADDRESS, port, name, record)
    except SandboxError:
        _stop(record)  # not recorded anywhere yet: nobody else would stop it
        raise
    return record


# ---------------------------------------------------------------------------- state ---
def _save_state(info: SandboxInfo, processes: dict[str, dict[str, str | int]]) -> None:
    state = asdict(info)
    state["inventory"] = str(info.inventory)
    state["ssh_key"] = str(info.ssh_key)
    state["processes"] = processes
    STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
    STATE_FILE.write_text(json.dumps(state, indent=2) + "\n")


def _load_state() -> dict | None:
    try:
        return json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return None


def _link_group_vars(inventory: Path) -> None:
    """An inventory written elsewhere still gets the sandbox group_vars beside it."""
    group_vars = project_root() / "inventory" / "sandbox" / "group_vars"
    link = inventory.parent / "group_vars"
    if inventory.parent.resolve() != group_vars.parent.resolve() and not link.exists():
        link.symlink_to(group_vars, target_is_directory=True)


# ------------------------------------------------------------------------------ API ---
def sandbox_status() -> SandboxInfo | None:
    """The sandbox that is up, or None."""
    state = _load_state()
    if not state:
        return None
    running = {h.name for h in hosts.running()}
    sandbox = [Host(**h) for h in state["hosts"]]
    info = SandboxInfo(
        store=Host(**state["store"]) if state.get("store") else None,
        balancer=Host(**state["balancer"]) if state.get("balancer") else None,
        hosts=sandbox,
        inventory=Path(state["inventory"]),
        model_url=state["model_url"],
        secrets_endpoint=state["secrets_endpoint"],
        pebble_directory=state.get("pebble_directory", PEBBLE_DIRECTORY),
        ssh_key=Path(state.get("ssh_key", hosts.key_path())),
        notes=list(state.get("notes", [])),
    )
    if not sandbox or not all(h.name in running for h in info.machines):
        return None
    if not all(_alive(record) for record in (state.get("processes") or {}).values()):
        return None  # a stand-in died with the run that started it: stale, not up
    return info


def sandbox_up(
    count: int = 1, inventory_path: Path | None = None, *, fleet: bool = False
) -> SandboxInfo:
    """Start pebble, the stand-ins and ``count`` app hosts (with ``fleet``, also a cache store
    and a load balancer in front of them); write the inventory. Undone on failure."""
    reason = hosts.unavailable_reason()
    if reason:
        raise SandboxError(reason)
    if sandbox_status() is not None:
        raise SandboxError(
            f"a sandbox is already up ({STATE_FILE}); run `irisctl sandbox down` first"
        )
    if _load_state() is not None:  # left behind by a run that died: clean it up first
        sandbox_down()
    inventory = Path(inventory_path) if inventory_path else default_inventory()
    processes: dict[str, dict[str, str | int]] = {}
    notes: list[str] = []
    wanted = sandbox_hosts(count)
    store, balancer = (STORE_HOST, BALANCER_HOST) if fleet else (None, None)
    info = SandboxInfo(
        hosts=wanted,
        inventory=inventory,
        model_url="",
        secrets_endpoint=MOTO_URL,
        store=store,
        balancer=balancer,
    )
    _save_state(info, processes)  # from here on sandbox_down() can clean up whatever started
    try:
        hosts.build()
        hosts.acme_up()  # also brings up the bridge the stand-ins bind to
        processes["moto"] = _start_moto(fleet)
        _save_state(info, processes)
        standin = _start_model_standin()
        if standin is None:
            notes.append("irisctl.sandbox.model_standin is not importable: no model stand-in")
        else:
            processes["model-standin"] = standin
        model_url = f"http://{BRIDGE_ADDRESS}:{MODEL_PORT}" if standin else ""
        info = SandboxInfo(
            hosts=wanted,
            inventory=inventory,
            model_url=model_url,
            secrets_endpoint=info.secrets_endpoint,
            notes=notes,
            store=store,
            balancer=balancer,
        )
        _save_state(info, processes)
        _boot(info.machines)
        _write_inventory(info)
    except BaseException:
        sandbox_down()
        raise
    return info


def _boot(machines: list[Host]) -> None:
    with ThreadPoolExecutor(max_workers=len(machines)) as pool:
        list(pool.map(lambda h: hosts.up(h.name, h.ip), machines))


def _write_inventory(info: SandboxInfo, app_host_vars: dict[str, str] | None = None) -> None:
    """``info``'s inventory: its app hosts in ``iris``; for a fleet also the store and balancer
    groups and the app hosts' shared-tier settings (the URL names the user, never the password,
    which they read from Secrets Manager)."""
    all_vars = {
        "cache_backup_bucket": BACKUP_BUCKET,
        "cache_backup_environment": json.dumps(BACKUP_ENVIRONMENT),
    }
    groups = {}
    app_vars = {}
    if info.store is not None:
        all_vars["iris_cache_store_secret_id"] = STORE_SECRET_ID
        groups["iris_cache_store"] = [info.store]
        app_vars["service_cache_url"] = f"redis://{STORE_USER}@{info.store.ip}:{STORE_PORT}/0"
        app_vars["service_cache_password_secret_id"] = STORE_SECRET_ID
    if info.balancer is not None:
        groups["iris_balancer"] = [info.balancer]
    hosts.write_inventory(
        info.inventory,
        info.hosts,
        groups=groups,
        app_vars=app_vars,
        app_host_vars=app_host_vars,
        all_vars=all_vars,
    )
    _link_group_vars(info.inventory)


# ------------------------------------------------------- a fleet in someone's sandbox ---
# The single-host test stories and the fleet stories run side by side in one sandbox: the
# single-host run owns it (bridge, pebble, moto, model stand-in, its hosts), the fleet run
# joins it as a guest with hosts and a model stand-in of its own (so model-call counts stay
# its own), and the owner waits for its guests to leave before it tears the sandbox down. A
# second single-host run may stay as a guest too, on hosts the owner converged for it.
GUESTS_DIR = hosts.STATE_DIR / "guests"
FLEET_GUEST = "fleet"
FLEET_APPS_OCTET = 41
FLEET_STORE = Host(name="iris-fleet-store", ip="10.231.0.50")
FLEET_BALANCER = Host(name="iris-fleet-lb", ip="10.231.0.51")


def _guest_file(name: str) -> Path:
    return GUESTS_DIR / f"{name}.json"


def _guest_record(machines: list[Host]) -> dict[str, object]:
    """This process as a guest: the owner waits while it lives (pid and start time)."""
    return {
        "pid": os.getpid(),
        "start": hosts.process_start_time(os.getpid()) or "",
        "hosts": [h.name for h in machines],
        "processes": {},
    }


def _write_guest(name: str, record: dict[str, object]) -> None:
    GUESTS_DIR.mkdir(parents=True, exist_ok=True)
    _guest_file(name).write_text(json.dumps(record))


def stay_as_guest(name: str) -> None:
    """Keep the sandbox up while this process runs, using the owner's hosts as they are (the
    single-host stories split over two runs): wait_for_guests() waits for it too."""
    _write_guest(name, _guest_record([]))


def leave_as_guest(name: str) -> None:
    """The owner need not wait for this process any more. Idempotent."""
    _guest_file(name).unlink(missing_ok=True)


def join_as_fleet(count: int, inventory: Path, wait_s: float = 900.0) -> SandboxInfo:
    """Wait (bounded) for the sandbox another process brings up, then add ``count`` app hosts,
    a store and a balancer of this fleet's own, with their own model stand-in; write their
    inventory to ``inventory``. ``leave_fleet()`` takes them down again."""
    deadline = time.monotonic() + wait_s
    owner = sandbox_status()
    while owner is None:
        if time.monotonic() > deadline:
            raise SandboxError(f"no sandbox came up within {wait_s:.0f} s to join")
        time.sleep(1)
        owner = sandbox_status()
    apps = [
        Host(name=f"iris-fleet-{i}", ip=f"10.231.0.{FLEET_APPS_OCTET + i - 1}")
        for i in range(1, count + 1)
    ]
    info = SandboxInfo(
        hosts=apps,
        inventory=inventory,
        model_url=f"http://{BRIDGE_ADDRESS}:{FLEET_MODEL_PORT}",
        secrets_endpoint=owner.secrets_endpoint,
        store=FLEET_STORE,
        balancer=FLEET_BALANCER,
    )
    record = _guest_record(info.machines)
    _write_guest(FLEET_GUEST, record)
    try:
        standin = _start_model_standin("fleet-model-standin", FLEET_MODEL_PORT)
        if standin is None:
            raise SandboxError("irisctl.sandbox.model_standin is not importable: no model stand-in")
        record["processes"] = {"model-standin": standin}
        _write_guest(FLEET_GUEST, record)
        _create_store_secret()
        _boot(info.machines)
        _write_inventory(info, app_host_vars={"service_openai_base_url": info.model_base_url})
    except BaseException:
        leave_fleet()
        raise
    return info


def _create_store_secret() -> None:
    client = _moto_client("secretsmanager")
    with contextlib.suppress(client.exceptions.ResourceExistsException):
        client.create_secret(Name=STORE_SECRET_ID, SecretString=secrets.token_urlsafe(32))


def leave_fleet() -> None:
    """Take a joined fleet's hosts and stand-in down. Idempotent."""
    path = _guest_file(FLEET_GUEST)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    for process in (record.get("processes") or {}).values():
        _stop(process)
    running = {h.name for h in hosts.running()}
    for name in record.get("hosts") or []:
        if name in running:
            with contextlib.suppress(SandboxError):
                hosts.down(name)
    path.unlink(missing_ok=True)


def wait_for_guests(timeout_s: float = 1200.0) -> list[str]:
    """Until every live guest has left (bounded); the guests still there when it gives up."""
    deadline = time.monotonic() + timeout_s
    while True:
        staying = []
        for path in sorted(GUESTS_DIR.glob("*.json")) if GUESTS_DIR.is_dir() else []:
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if _alive(record):
                staying.append(path.stem)
        if not staying or time.monotonic() > deadline:
            return staying
        time.sleep(1)


def sandbox_down() -> None:
    """Stop the sandbox's hosts, stand-ins, pebble and bridge. Idempotent."""
    state = _load_state() or {}
    leave_fleet()  # a guest still there when its owner goes (it died, or was waited for enough)
    for record in (state.get("processes") or {}).values():
        _stop(record)
    errors = []
    for step in (hosts.down_all, hosts.acme_down):
        try:
            step()
        except SandboxError as exc:
            errors.append(str(exc))
    STATE_FILE.unlink(missing_ok=True)
    if errors:
        raise SandboxError("; ".join(errors))
