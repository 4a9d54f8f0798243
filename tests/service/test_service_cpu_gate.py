"""The worker's cpu gate: one request's Python work at a time; health and waits outside it."""

import threading
from concurrent.futures import ThreadPoolExecutor

from iris_service.app import create_app
from iris_service.cpu_gate import CpuGate
from service_helpers import analyze_body, sample_source, wait_until

HEADERS = {"x-api-key": "test-key"}


def test_released_gives_the_slot_to_another_thread_and_takes_it_back():
    gate = CpuGate()
    entered = threading.Event()

    def other() -> None:
        with gate.held():
            entered.set()

    with gate.held():
        worker = threading.Thread(target=other)
        worker.start()
        assert not entered.wait(0.2)  # the slot is ours
        with gate.released():
            assert entered.wait(10)
            worker.join(10)
        # back in our hands: nobody else can enter now
        assert not gate._slots.acquire(blocking=False)


def test_released_outside_a_held_slot_changes_nothing():
    gate = CpuGate()
    with gate.released():
        pass
    with gate.held():
        assert not gate._slots.acquire(blocking=False)
    assert gate._slots.acquire(blocking=False)


def test_health_answers_while_another_request_holds_the_slot(settings):
    app = create_app(settings.with_changes(api_keys=("test-key",)))
    gate = app.extensions["iris"].gate
    release = threading.Event()
    holding = threading.Event()

    def hog() -> None:
        with gate.held():
            holding.set()
            release.wait(30)

    pool = ThreadPoolExecutor(3)
    try:
        pool.submit(hog)
        assert holding.wait(10)
        health = pool.submit(app.test_client().get, "/api/iris/health")
        analysis = pool.submit(
            app.test_client().post,
            "/api/iris/analyze",
            json=analyze_body(sample_source()),
            headers=HEADERS,
        )
        assert health.result(timeout=10).status_code == 200
        assert not analysis.done()  # waits for the slot
        release.set()
        assert analysis.result(timeout=30).status_code == 200
    finally:
        release.set()
        pool.shutdown()


def test_an_analysis_waiting_on_the_model_lets_the_next_one_run(settings, standin):
    app = create_app(settings.with_changes(api_keys=("test-key",)))
    standin.configure(delay_s=3)

    def post(tag: str):
        return app.test_client().post(
            "/api/iris/analyze", json=analyze_body(sample_source(tag)), headers=HEADERS
        )

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(post, "first")
        assert wait_until(lambda: standin.calls() == 1, timeout=10)
        second = pool.submit(post, "second")
        # Both reach the model while the first is still waiting there.
        assert wait_until(lambda: standin.calls() == 2, timeout=10)
        assert not first.done()
        assert first.result(30).status_code == 200 and second.result(30).status_code == 200


def test_the_model_answer_is_parsed_holding_the_gate_and_only_the_exchange_waits(
    settings, standin, monkeypatch
):
    """Only the network exchange runs inside ``waiting`` (the gate given back); the SDK builds
    the request and the answer is parsed outside it, so a hundred analyses starting or answered
    together take turns on the gate instead of crowding the GIL ahead of a health check."""
    import contextlib
    import time

    from iris_service import agent as agent_module
    from iris_service.model_contract import build_prompt
    from openai._base_client import SyncAPIClient

    inside = threading.Event()
    calls_while_waiting: list[int] = []
    parsed_while_waiting: list[bool] = []
    real_answer_from = agent_module._answer_from

    @contextlib.contextmanager
    def waiting():
        inside.set()
        try:
            yield
        finally:
            calls_while_waiting.append(standin.calls())
            inside.clear()

    def answer_from(response, settings_):
        parsed_while_waiting.append(inside.is_set())
        return real_answer_from(response, settings_)

    built_while_waiting: list[bool] = []
    real_build_request = SyncAPIClient._build_request

    def build_request(self, *args, **kwargs):
        built_while_waiting.append(inside.is_set())
        return real_build_request(self, *args, **kwargs)

    monkeypatch.setattr(agent_module, "_answer_from", answer_from)
    monkeypatch.setattr(SyncAPIClient, "_build_request", build_request)
    model = agent_module.Agent(settings)
    answer = model.analyze(
        build_prompt("1 | x = 1", "python"), time.monotonic() + 20, waiting=waiting
    )
    assert answer.file_intent
    assert parsed_while_waiting == [False]
    assert built_while_waiting == [False]
    assert 1 in calls_while_waiting  # the model call happened inside waiting


def test_the_model_client_may_hold_a_connection_for_every_thread():
    """httpx2's own default (100 connections) would queue a worker's model calls past 100."""
    from iris_service import gunicorn_conf, model_transport

    assert model_transport.CONNECTION_LIMITS.max_connections >= gunicorn_conf.threads
