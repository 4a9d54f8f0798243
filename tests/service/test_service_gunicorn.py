"""The service under real gunicorn: real sockets, several workers and threads."""

import json
import os
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from iris_service.log_format import ACCESS_LINE_RE, ERROR_LINE_RE
from iris_service.metrics import CacheMetrics
from iris_service.ranges import validate_blocks
from iris_service.source import line_count
from iris_service.startup_check import EXIT_BAD_CONFIG
from service_helpers import analyze_body, free_port, sample_source, wait_until


def test_health_and_analysis_under_gunicorn(gunicorn_factory, standin):
    server = gunicorn_factory().start()
    health = requests.get(server.url + "/api/iris/health", timeout=5)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    source = sample_source()
    response = server.post(analyze_body(source))
    assert response.status_code == 200
    validate_blocks(response.json()["responsibility_blocks"], line_count(source))
    assert requests.post(server.url + "/api/iris/analyze", json={}, timeout=5).status_code == 401


def test_identical_concurrent_requests_cost_one_model_call(gunicorn_factory, standin):
    server = gunicorn_factory(IRIS_WORKERS="2", IRIS_THREADS="4").start()
    standin.configure(delay_s=1.5)
    body = analyze_body(sample_source("same"))
    barrier = threading.Barrier(8)

    def call(_):
        barrier.wait()
        return server.post(body)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(call, range(8)))
    assert [r.status_code for r in responses] == [200] * 8
    assert standin.calls() == 1
    assert sorted(r.json()["metadata"]["cache_hit"] for r in responses) == [0] + [1] * 7
    assert len({json.dumps(r.json()["responsibility_blocks"]) for r in responses}) == 1
    metrics = CacheMetrics(server.log_dir / "iris" / "metrics.json").read()  # no waiting
    assert (metrics["hits"], metrics["misses"], metrics["model_calls"]) == (7, 1, 1)


def test_distinct_concurrent_requests_and_metrics_file(gunicorn_factory, standin):
    server = gunicorn_factory(IRIS_WORKERS="2", IRIS_THREADS="4").start()
    standin.configure(delay_s=0.3)
    bodies = [analyze_body(sample_source(f"d{n}")) for n in range(6)] * 3

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(server.post, bodies))
    assert all(r.status_code == 200 for r in responses)
    assert standin.calls() == 6
    metrics = CacheMetrics(server.log_dir / "iris" / "metrics.json").read()  # no waiting
    assert metrics["hits"] + metrics["misses"] == 18
    assert metrics["model_calls"] == 6 and metrics["misses"] == 6
    emf_lines = (server.log_dir / "emf.log").read_text().splitlines()
    assert len(emf_lines) == 18 * 3  # requested, started, completed per request
    assert all(json.loads(line)["_aws"] for line in emf_lines)


def test_cache_stats_count_every_answered_request_at_once(gunicorn_factory, standin):
    """The admin tool, run the moment the last answer arrives, counts every request."""
    server = gunicorn_factory(IRIS_WORKERS="3", IRIS_THREADS="4").start()
    distinct = [analyze_body(sample_source(f"s{n}")) for n in range(5)]
    bodies = distinct + distinct * 4  # 5 misses first, then 20 hits spread over the workers
    with ThreadPoolExecutor(8) as pool:
        first = list(pool.map(server.post, distinct))
        rest = list(pool.map(server.post, bodies[len(distinct) :]))
    assert [r.status_code for r in first + rest] == [200] * len(bodies)
    admin = subprocess.run(
        [str(Path(sys.executable).with_name("iris-service-admin")), "cache", "stats"],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert admin.returncode == 0, admin.stderr
    stats = json.loads(admin.stdout)
    assert stats["hits"] + stats["misses"] == len(bodies)
    assert (stats["hits"], stats["misses"], stats["model_calls"]) == (20, 5, 5)
    assert stats["entries"] == 5 and stats["hit_rate"] == 0.8
    assert stats["output_tokens"] > 0 and stats["cost_saved_usd"] > 0


def test_health_and_cache_hits_answer_while_slow_analyses_are_in_flight(gunicorn_factory, standin):
    server = gunicorn_factory(IRIS_WORKERS="2", IRIS_THREADS="4").start()
    cached = analyze_body(sample_source("cached"))
    assert server.post(cached).status_code == 200
    standin.configure(delay_s=4)
    pool = ThreadPoolExecutor(4)
    slow = [pool.submit(server.post, analyze_body(sample_source(f"slow{n}"))) for n in range(4)]
    try:
        # All four slow analyses have reached the model (and wait there 4 s).
        assert wait_until(lambda: standin.calls() >= 5, timeout=30), standin.calls()
        health = requests.get(server.url + "/api/iris/health", timeout=10)
        hit = server.post(cached)
        assert not any(future.done() for future in slow)
        assert health.status_code == 200
        assert hit.json()["metadata"]["cache_hit"] == 1
    finally:
        assert all(future.result().status_code == 200 for future in slow)
        pool.shutdown()


def test_cache_survives_a_restart(gunicorn_factory, standin):
    server = gunicorn_factory().start()
    body = analyze_body(sample_source())
    assert server.post(body).json()["metadata"]["cache_hit"] == 0
    server.stop()
    metrics = json.loads((server.log_dir / "iris" / "metrics.json").read_text())
    assert (metrics["misses"], metrics["model_calls"]) == (1, 1)
    server.start()
    assert server.post(body).json()["metadata"]["cache_hit"] == 1
    assert standin.calls() == 1


def test_oversized_body_and_unknown_route_are_json_over_real_sockets(gunicorn_factory):
    server = gunicorn_factory(IRIS_MAX_BODY_BYTES="4096").start()
    big = server.post(analyze_body("x = 1\n" * 2000))
    assert big.status_code == 413
    assert big.json() == {"success": False, "error": "Request body too large"}
    missing = requests.get(server.url + "/api/iris/nothing", timeout=5)
    assert missing.status_code == 404 and missing.json()["success"] is False
    assert server.post(analyze_body(sample_source())).status_code == 200


def test_chunked_body_over_the_limit_is_413(gunicorn_factory):
    server = gunicorn_factory(IRIS_MAX_BODY_BYTES="4096").start()

    def chunked(body):
        raw = json.dumps(body).encode()
        return iter([raw[i : i + 512] for i in range(0, len(raw), 512)])  # no Content-Length

    def post(body):
        return requests.post(
            server.url + "/api/iris/analyze",
            data=chunked(body),
            headers={"x-api-key": server.env["IRIS_API_KEY"], "Content-Type": "application/json"},
            timeout=30,
        )

    big = post(analyze_body("x = 1\n" * 2000))
    assert big.status_code == 413
    assert big.json() == {"success": False, "error": "Request body too large"}
    assert post(analyze_body(sample_source())).status_code == 200


def test_model_timeout_under_gunicorn_is_504(gunicorn_factory):
    server = gunicorn_factory(IRIS_MODEL_TIMEOUT_S="0.5").start()
    response = server.post(analyze_body("x = 1\n# IRIS-STANDIN: delay=3\n"))
    assert response.status_code == 504
    assert response.json()["success"] is False


@pytest.mark.parametrize(
    "overrides, reason",
    [
        ({"IRIS_ENV": "production"}, "IRIS_ENV='production' is not one of dev, prod"),
        ({"IRIS_ENV": "prod", "IRIS_API_KEY": ""}, "IRIS_ENV=prod needs IRIS_API_KEY"),
        ({"IRIS_MODEL_RETRIES": "many"}, "IRIS_MODEL_RETRIES must be a number"),
    ],
)
def test_bad_environment_stops_gunicorn_with_one_clear_line(gunicorn_factory, overrides, reason):
    server = gunicorn_factory(**overrides)
    result = server.run_expecting_exit()
    assert result.returncode == EXIT_BAD_CONFIG
    errors = [line for line in server.error_log().splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and f"refusing to start: {reason}" in errors[0], errors
    assert "Traceback" not in server.error_log() and "Booting worker" not in server.error_log()
    # The error log is a file here (as on hosts): the journal gets the same single line.
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        f"iris-backend: {errors[0].split('] ', 2)[2]}"
    ]


def test_prod_with_a_client_key_starts(gunicorn_factory):
    server = gunicorn_factory(IRIS_ENV="prod").start()
    assert requests.get(server.url + "/api/iris/health", timeout=5).status_code == 200
    assert requests.post(server.url + "/api/iris/analyze", json={}, timeout=5).status_code == 401


def test_gunicorn_tells_systemd_it_is_ready(gunicorn_factory, tmp_path):
    notify_path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify_path)
    listener.settimeout(30)
    try:
        server = gunicorn_factory(NOTIFY_SOCKET=notify_path)
        server.start()
        message = listener.recv(4096).decode()
    finally:
        listener.close()
    assert "READY=1" in message.split("\n")


def test_logs_go_to_the_configured_files_in_the_documented_formats(gunicorn_factory, tmp_path):
    server = gunicorn_factory().start()
    requests.get(server.url + "/api/iris/health", headers={"User-Agent": "probe/1"}, timeout=5)
    server.stop()
    access = (tmp_path / "access.log").read_text().splitlines()
    health = [ACCESS_LINE_RE.match(line) for line in access if "/api/iris/health" in line]
    assert health and all(health), access
    # start() polls with a 1 s client timeout: on a loaded machine a poll the client gave up on
    # is still served, and logged, after this probe. So find the probe's own line.
    probe = [match for match in health if match["agent"] == "probe/1"]
    assert [match["status"] for match in probe] == ["200"], access
    errors = (tmp_path / "error.log").read_text().splitlines()
    parsed = [ERROR_LINE_RE.match(line) for line in errors]
    assert all(parsed), errors  # nothing unparsed: no traceback, every line stamped
    messages = [match["message"] for match in parsed]
    assert any(m.startswith("Booting worker") for m in messages)
    # The service's own application log lines land in the same file, in the same format.
    assert any(m.startswith("iris-service ") and "ready" in m for m in messages)


def test_host_config_can_star_import_and_override(tmp_path):
    host_conf = tmp_path / "gunicorn.conf.py"
    host_conf.write_text(
        "from iris_service.gunicorn_conf import *  # noqa: F403\n"
        "bind = '127.0.0.1:9999'\nworkers = 3\n"
    )
    env = {**os.environ, "IRIS_THREADS": "16", "IRIS_ACCESS_LOG": "/var/log/iris/access.log"}
    names = ("bind", "workers", "threads", "worker_class", "timeout", "accesslog")
    code = (
        f"import runpy, json; c = runpy.run_path({str(host_conf)!r}); "
        f"print(json.dumps({{k: c[k] for k in {names!r}}}))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    conf = json.loads(out.stdout)
    assert conf["bind"] == "127.0.0.1:9999" and conf["workers"] == 3
    assert conf["threads"] == 16
    assert conf["worker_class"] == "iris_service.health_lane.HealthLaneThreadWorker"
    assert conf["timeout"] == 120 and conf["accesslog"] == "/var/log/iris/access.log"


@pytest.mark.parametrize("name", ["IRIS_BIND", "IRIS_WORKERS"])
def test_gunicorn_defaults(name, monkeypatch):
    import importlib

    import iris_service.gunicorn_conf as conf

    monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("IRIS_HEALTH_BIND", raising=False)
    importlib.reload(conf)
    assert conf.bind == ["127.0.0.1:8080"] and conf.workers == 2
    assert conf.worker_class == "iris_service.health_lane.HealthLaneThreadWorker"
    assert conf.threads >= 128  # hundreds in flight


def _effective_config(control_socket: Path) -> dict:
    """What the running arbiter uses (gunicorn's control socket: ``show config``)."""
    from gunicorn.ctl.client import ControlClient

    with ControlClient(str(control_socket), timeout=10) as client:
        return client.send_command("show config")


@pytest.mark.parametrize("threads", [5, 24])  # below and above the environment's 8
def test_threads_set_by_a_host_config_file_are_what_each_worker_accepts(
    gunicorn_factory, tmp_path, threads
):
    """The host's config file owns threads; worker_connections follows it, up or down."""
    control = tmp_path / "gunicorn.ctl"
    host_conf = tmp_path / "host.conf.py"
    host_conf.write_text(
        "from iris_service.gunicorn_conf import *  # noqa: F403\n"
        f"threads = {threads}\ncontrol_socket = {str(control)!r}\n"
    )
    server = gunicorn_factory(IRIS_THREADS="8")
    server.command = [*server.command[:-3], "-c", str(host_conf), server.command[-1]]
    server.start()
    assert wait_until(control.exists, timeout=30), server.error_log()
    effective = _effective_config(control)
    assert effective["threads"] == threads
    assert effective["worker_connections"] == threads and effective["keepalive"] == 0


def _raw_post(port: int, body: bytes, headers: dict[str, str]) -> bytes:
    """POST like nginx does: the whole body first, then read the answer until the close."""
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = (
        f"POST /api/iris/analyze HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.socket() as sock:
        # A small send buffer keeps most of the body in flight until the server reads it, as
        # on a real host; a large loopback buffer could swallow 3 MB and hide an early close.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", port))
        sock.sendall(request + body)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize("key_is_valid", [True, False])
def test_body_over_the_limit_is_read_before_the_413_so_a_proxy_gets_the_answer(
    gunicorn_factory, key_is_valid
):
    server = gunicorn_factory().start()  # the default 2 MiB limit
    body = json.dumps(analyze_body("x" * 3_000_000)).encode()
    api_key = server.env["IRIS_API_KEY"] if key_is_valid else "wrong-key"
    headers = {"Content-Type": "application/json", "x-api-key": api_key}
    raw = _raw_post(server.port, body, headers)  # an early close raises BrokenPipe/Reset here
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n")[0]
    if key_is_valid:
        assert status == b"HTTP/1.1 413 REQUEST ENTITY TOO LARGE", head
        assert json.loads(payload) == {"success": False, "error": "Request body too large"}
    else:  # refused before the body was wanted: still read, so still answered
        assert status == b"HTTP/1.1 401 UNAUTHORIZED", head
        assert json.loads(payload)["success"] is False


def test_health_checks_get_a_listening_socket_of_their_own(gunicorn_factory):
    """IRIS_HEALTH_BIND adds a second socket to the same workers (hosts route health there):
    a health check then never waits in the analyses' accept queue behind a burst."""
    health_port = free_port()
    server = gunicorn_factory(IRIS_HEALTH_BIND=f"127.0.0.1:{health_port}").start()
    answer = requests.get(f"http://127.0.0.1:{health_port}/api/iris/health", timeout=30)
    assert answer.status_code == 200 and answer.json()["status"] == "ok"
    listening = [line for line in server.error_log().splitlines() if "Listening at:" in line]
    assert listening and f"127.0.0.1:{health_port}" in listening[0]
    assert f"127.0.0.1:{server.port}" in listening[0]  # one arbiter, both sockets
