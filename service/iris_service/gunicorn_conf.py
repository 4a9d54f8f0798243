"""Gunicorn defaults: ``gunicorn -c python:iris_service.gunicorn_conf iris_service.wsgi:app``.

The host's /etc/iris/gunicorn.conf.py does ``from iris_service.gunicorn_conf import *`` and
overrides a few names, so every setting here is a plain module-level name.

Why gthread, 2 workers x 16 threads: an analysis spends seconds waiting on the model API and
almost no CPU. Upstream's 2 sync workers meant two slow analyses blocked everything, health
checks and cache hits included (bench/service_serving.py: 20 analyses of 2 s took 20 s and a
health check waited up to 20 s). With threads, a waiting analysis holds only a thread. On a
1 GB / 2 vCPU host: one process per vCPU (the GIL makes more processes the only way to use
both CPUs for cache hits; each costs ~80 MB RSS with the OpenAI SDK loaded), and 16 threads
each (a thread costs well under 1 MB RSS) give 32 request slots, so health checks and cache
hits are still answered with ~30 analyses in flight. gevent would scale further but must
monkey-patch the OpenAI/boto3 clients' sockets; threads need nothing special.

preload_app is off: measured, preloading saved no memory (peak RSS was higher: reference
counting dirties the shared pages), and loading in each worker keeps the secret fetch, the
OpenAI client's connection pool, sockets and locks out of the fork.

systemd Type=notify: gunicorn's arbiter sends READY=1 itself when NOTIFY_SOCKET is set.
"""

import os

from iris_service.log_format import ACCESS_MESSAGE_FORMAT
from iris_service.startup_check import refuse_bad_config

bind = os.environ.get("IRIS_BIND", "127.0.0.1:8080")
workers = int(os.environ.get("IRIS_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("IRIS_THREADS", "16"))
# A request's own deadline (IRIS_REQUEST_DEADLINE_S, 100 s) ends before this; for gthread this
# is the worker heartbeat limit, so it only fires for a wedged worker.
timeout = int(os.environ.get("IRIS_TIMEOUT_S", "120"))
graceful_timeout = 30
# A gthread worker accepts connections until worker_connections (default 1000), even with every
# thread busy: a health check accepted by a worker full of slow analyses then waits for one
# of them to end (measured: up to 1.7 s with 28 analyses in flight) although the other worker
# is idle. Accepting only what the threads can serve leaves the rest to the other worker (or
# the listen backlog); keep-alive is off because idle kept-alive connections would count too
# (nginx talks HTTP/1.0 to upstreams unless told otherwise, so it does not use it anyway).
worker_connections = threads
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


def on_starting(server):  # gunicorn server hook: server is the Arbiter
    """Refuse a bad environment before binding; cap worker_connections at threads.

    worker_connections is capped here for a host config that overrides only ``threads``.
    """
    refuse_bad_config(server)
    if server.cfg.worker_connections > server.cfg.threads:
        server.cfg.set("worker_connections", server.cfg.threads)
