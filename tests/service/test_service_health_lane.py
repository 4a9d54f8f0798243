"""Health checks on the health socket are handled in a lane of their own
(iris_service/health_lane.py), never behind the connections queued for the analyses."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from iris_service.health_lane import health_address
from service_helpers import analyze_body, free_port, sample_source, wait_until


def test_the_health_address_is_read_from_its_bind():
    assert health_address("127.0.0.1:8081") == ("127.0.0.1", 8081)
    assert health_address("[::1]:9000") == ("::1", 9000)
    assert health_address("") is None


@pytest.mark.parametrize("lane", [True, False])
def test_a_health_check_is_answered_while_analyses_wait_for_the_only_thread(
    gunicorn_factory, standin, tmp_path, lane
):
    """One thread, busy with an analysis, and another analysis queued for it: a health check
    in its lane is answered before either ends; in the analyses' queue it waits for both."""
    health_port = free_port()
    conf = tmp_path / "lane.conf.py"
    conf.write_text(
        "from iris_service.gunicorn_conf import *  # noqa: F403\n"
        "workers = 1\nthreads = 1\n"
        # accept more connections than there are threads, so that they queue in the worker
        "worker_connections = 4\n"
        "def on_starting(server):\n    pass\n" + ("" if lane else "worker_class = 'gthread'\n")
    )
    server = gunicorn_factory(IRIS_HEALTH_BIND=f"127.0.0.1:{health_port}")
    server.command = [*server.command[:-3], "-c", str(conf), server.command[-1]]
    server.start()
    standin.configure(delay_s=3)
    health_url = f"http://127.0.0.1:{health_port}/api/iris/health"
    with ThreadPoolExecutor(2) as pool:
        analyses = [
            pool.submit(server.post, analyze_body(sample_source(f"lane{n}"))) for n in range(2)
        ]
        assert wait_until(lambda: standin.calls() == 1, timeout=30)  # the thread is busy
        answer = requests.get(health_url, timeout=60)
        answered_first = not any(analysis.done() for analysis in analyses)
        assert [analysis.result().status_code for analysis in analyses] == [200, 200]
    assert answer.status_code == 200
    assert answered_first is lane
