"""Gunicorn defaults: ``gunicorn -c python:iris_service.gunicorn_conf iris_service.wsgi:app``.

The host's /etc/iris/gunicorn.conf.py does ``from iris_service.gunicorn_conf import *`` and
overrides a few names, so every setting here is a plain module-level name.

Why gthread, 2 workers x 160 threads: an analysis spends seconds waiting on the model API and
almost no CPU, so capacity is how many can wait at once. A waiting analysis holds only a
thread (well under 1 MB); one process per vCPU (the GIL makes processes the only way to use
both CPUs for cache hits; each costs ~60-70 MB RSS with the OpenAI SDK loaded; boto3 is not:
the secret is read by a short-lived child process, iris_service/secrets.py).
2 x 160 = 320 request slots: nginx admits at most ``nginx_api_max_in_flight`` (288) API
requests at once and answers the rest 503 with Retry-After, so 32 slots are always left for
health checks. A health check never waits behind the analyses, on four counts:
- it has a listening socket of its own (IRIS_HEALTH_BIND, hosts: service_health_bind), so it
  is not in the accept queue behind a burst's connections;
- its connection is handled in a lane of its own (iris_service/health_lane.py), not at the
  end of the worker's thread-pool queue, where a burst's connections are each taken off by a
  thread that must first get the GIL;
- every other request holds the worker's cpu_gate slot while it runs Python code and gives it
  back only while it waits on the network (iris_service/cpu_gate.py, model_transport.py), so
  only one analysis thread competes with it for the GIL;
- a worker starts all its threads and pays the OpenAI SDK's first-call costs before it accepts
  anything (post_worker_init below, iris_service/model_warmup.py).
Measured with bench/capacity_bench.py (256 analyses of a 2 s model through nginx on a sandbox
host sharing the 2 CPUs with the load generator; health probed every 20 ms, each probe on a
new TLS connection), the first burst after a restart and the next one, two runs: all 256
answered within 3.2 s; health p99 as the probe saw it 41.8 and 50.2 ms, then 40.3 and
40.2 ms; as nginx saw the service answer it 10 and 14 ms, then 21 and 34 ms; peak RSS of the
service 228 and 238 MB, then 229 and 239 MB. With the worker start hook off in the same runs:
36.7 and 23.9 ms, then 48.7 and 43.4 ms: with the lane, the hook no longer changes the tail
measurably; it stays, as it costs nothing after the start.
Before the socket, the lane and the narrower gate, the same bench measured health p99 of
92-251 ms. What grew between bursts is mostly per-thread state: every pool thread that has
served a request holds its own SQLite connections (the figure is in
iris_service/sqlite_files.py; the threads alone cost +2 MB); the threads of a process share
one (sqlite_files.ProcessConnection).
gevent would need the OpenAI sockets monkey-patched and serializes CPU work in one loop just
the same; threads need nothing special.

preload_app is off: measured, preloading saved no memory (peak RSS was higher: reference
counting dirties the shared pages), and loading in each worker keeps the secret fetch, the
OpenAI client's connection pool, sockets and locks out of the fork.

systemd Type=notify: gunicorn's arbiter sends READY=1 itself when NOTIFY_SOCKET is set.
"""

import os
import sys
import threading

from iris_service.log_format import ACCESS_MESSAGE_FORMAT
from iris_service.startup_check import refuse_bad_config

# IRIS_HEALTH_BIND: a second listening socket, served by the same workers, for health checks
# alone (hosts set it; see roles/service): a health check then never waits in the accept queue
# behind a burst of analyses. Unset, health is served on IRIS_BIND with everything else.
bind = [os.environ.get("IRIS_BIND", "127.0.0.1:8080")] + (
    [os.environ["IRIS_HEALTH_BIND"]] if os.environ.get("IRIS_HEALTH_BIND") else []
)
workers = int(os.environ.get("IRIS_WORKERS", "2"))
# gthread, with health-socket connections handled in a lane of their own (health_lane.py)
worker_class = "iris_service.health_lane.HealthLaneThreadWorker"
threads = int(os.environ.get("IRIS_THREADS", "160"))
# A request's own deadline (IRIS_REQUEST_DEADLINE_S, 100 s) ends before this; for gthread this
# is the worker heartbeat limit, so it only fires for a wedged worker.
timeout = int(os.environ.get("IRIS_TIMEOUT_S", "120"))
graceful_timeout = 30
# keep-alive is off: gunicorn would count idle kept-alive connections against
# worker_connections (derived from threads in on_starting below), and nginx talks HTTP/1.0 to
# upstreams unless told otherwise, so it would not use it anyway.
keepalive = 0
accesslog = os.environ.get("IRIS_ACCESS_LOG", "-")
errorlog = os.environ.get("IRIS_ERROR_LOG", "-")
loglevel = os.environ.get("IRIS_LOG_LEVEL", "info")
# Both logs start every record with an ISO 8601 UTC timestamp so they can be merged in time
# order; the formats are a contract (iris_service/log_format.py, docs/design.md).
logger_class = "iris_service.log_format.IsoTimestampLogger"
access_log_format = ACCESS_MESSAGE_FORMAT
preload_app = False
# The heartbeat file lives in RAM when possible, so a slow disk cannot make workers look dead.
worker_tmp_dir = (
    "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
)
proc_name = "iris-backend"


def _accept_only_what_threads_serve(server) -> None:
    """worker_connections = threads, from the final configuration.

    A gthread worker accepts connections until worker_connections (default 1000) even with
    every thread busy: a health check accepted by a worker full of slow analyses then waits
    for one of them to end although another worker is idle. Accepting only what the threads
    can serve leaves the rest to another worker (or the listen backlog). Derived here, after
    the host's config file has set ``threads``, never at import: a module-level
    ``worker_connections = threads`` saw only this file's default, so a host's larger
    ``threads`` never raised it (16 connections per worker whatever the inventory said). It is
    not a setting of its own: ``threads`` is its one owner.
    """
    server.cfg.set("worker_connections", server.cfg.threads)


def on_starting(server):  # gunicorn server hook: server is the Arbiter
    """Refuse a bad environment before binding; derive worker_connections from threads."""
    refuse_bad_config(server)
    _accept_only_what_threads_serve(server)


def on_reload(server):  # SIGHUP re-reads the config files: derive it again before respawning
    _accept_only_what_threads_serve(server)


# CPython hands the GIL to another waiting thread every switch interval (5 ms by default), and
# which waiter gets it is up to the OS: with a hundred threads wanting it in a burst's first
# moments, a health check waited many of these turns. 1 ms turns cut that wait (measured, 256
# analyses of a 2 s model served directly: health max 30-84 ms against 69-257 ms with 5 ms).
# On cache hits 1 ms and 5 ms turns measured alike (within the run-to-run noise).
GIL_SWITCH_INTERVAL_S = 0.001


def _start_every_thread(worker) -> None:
    """Create the worker's ``threads`` threads now, before it accepts a connection.

    ThreadPoolExecutor starts a thread per submitted request until it has ``threads`` of them:
    a burst after a (re)start otherwise creates 160 threads at once in each worker, each one
    bootstrapping under the GIL while the others want it, and a health check waited behind
    them (0.5-0.75 s in the first 256-analysis burst after a start, 30-70 ms in the next).
    The price: idle threads take turns, so cache hits are spread over all of them from the
    start, as they are anyway after any burst. Measured side by side, hits after a
    300-connection burst are the same with and without this (0.64x of the minimal app both);
    a fresh pool that has started only a few threads serves hits faster: 0.73x against 0.66x,
    and in two bench/service_serving.py runs 0.96x against 0.60x and 0.65x against 0.46x (on a
    machine shared with other load: run-to-run spread is large).
    """
    pool = getattr(worker, "tpool", None)  # gthread only: a sync worker has no threads
    if pool is None:
        return
    count = worker.cfg.threads
    started = threading.Barrier(count + 1)
    for _ in range(count):
        pool.submit(started.wait)  # each task holds its thread until all of them exist
    try:
        started.wait(timeout=60)
    except threading.BrokenBarrierError:  # never fatal: threads are then started on demand
        worker.log.warning("not all %d threads started within 60 s", count)


def post_worker_init(worker):  # gunicorn server hook: the app is loaded, nothing accepted yet
    """Shorter GIL turns and every thread started before the first request (see above)."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    _start_every_thread(worker)
