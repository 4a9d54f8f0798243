"""EMF events: schema-valid single lines, delivered over TCP or to a file, never blocking."""

import json
import os

import pytest
from iris_service.config import Settings
from iris_service.emf import EVENTS, EmfEmitter, build_event, event_line, to_line
from jsonschema import Draft7Validator
from service_helpers import analyze_body, free_port, sample_source


def assert_valid_emf(document, schema):
    Draft7Validator(schema).validate(document)
    for directive in document["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for name in dimension_set:
                assert name in document, f"dimension {name} is not a root member"
        for metric in directive["Metrics"]:
            assert metric["Name"] in document, f"metric {metric['Name']} is not a root member"
            assert isinstance(document[metric["Name"]], int | float)


@pytest.mark.parametrize("event", sorted(EVENTS))
@pytest.mark.parametrize("error_type", [None, "ModelTimeout"])
def test_every_event_is_valid_emf(emf_schema, event, error_type):
    values = {name: 1 for name in EVENTS[event]}
    document = build_event(
        event, values, environment="prod", endpoint="analyze", error_type=error_type
    )
    assert_valid_emf(document, emf_schema)
    assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "IRIS/Analysis"
    dims = document["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]
    assert dims == ["Environment", "Endpoint"] + (["ErrorType"] if error_type else [])


def test_event_without_its_metrics_is_refused():
    with pytest.raises(ValueError):
        build_event("analysis_completed", {"TotalLatencyMs": 1}, environment="x", endpoint="y")


def test_request_events_reach_a_tcp_listener(make_client, settings, emf_listener, emf_schema):
    client = make_client(settings.with_changes(emf_file=None, emf_endpoint=emf_listener.endpoint))
    client.post("/api/iris/analyze", json=analyze_body(sample_source()))
    events = emf_listener.wait_for(3)
    assert [e["event"] for e in events] == [
        "analysis_requested",
        "analysis_started",
        "analysis_completed",
    ]
    for line in emf_listener.lines:
        assert "\n" not in line and line.startswith("{") and line.endswith("}")
    for document in events:
        assert_valid_emf(document, emf_schema)
        assert document["Environment"] == "dev"
    assert events[1]["CacheHit"] == 0
    assert events[2]["ResponsibilityBlockCount"] >= 1


def test_cache_hit_and_failure_events(make_client, settings, emf_listener, emf_schema):
    client = make_client(settings.with_changes(emf_file=None, emf_endpoint=emf_listener.endpoint))
    body = analyze_body(sample_source())
    client.post("/api/iris/analyze", json=body)
    client.post("/api/iris/analyze", json=body)
    client.post("/api/iris/analyze", json=analyze_body("x\n# IRIS-STANDIN: mode=garbage\n"))
    events = emf_listener.wait_for(9)
    started = [e for e in events if e["event"] == "analysis_started"]
    assert [e["CacheHit"] for e in started] == [0, 1, 0]
    failed = [e for e in events if e["event"] == "analysis_failed"]
    assert len(failed) == 1
    assert failed[0]["ErrorType"] == "ModelError" and failed[0]["FailureCount"] == 1
    for document in events:
        assert_valid_emf(document, emf_schema)


def test_started_is_emitted_before_the_model_call(client, settings):
    events_at_call = []
    service = client.application.extensions["iris"]
    real_analyze = service.agent.analyze

    def spy(*args, **kwargs):
        lines = settings.emf_file.read_text().splitlines()
        events_at_call.extend(json.loads(line)["event"] for line in lines)
        return real_analyze(*args, **kwargs)

    service.agent.analyze = spy
    client.post("/api/iris/analyze", json=analyze_body(sample_source()))
    assert events_at_call == ["analysis_requested", "analysis_started"]


def test_file_sink_appends_bare_lines(tmp_path, emf_schema):
    path = tmp_path / "emf.log"
    emitter = EmfEmitter(Settings(emf_file=path, env="prod"))
    emitter.emit("analysis_requested", {"CodeLengthChars": 10, "EstimatedInputTokens": 3})
    emitter.emit(
        "analysis_failed",
        {"FailureCount": 1, "LatencyUntilFailureMs": 2.5},
        error_type="BadRequest",
    )
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert_valid_emf(json.loads(line), emf_schema)


@pytest.mark.parametrize("event", sorted(EVENTS))
@pytest.mark.parametrize("error_type", [None, "ModelTimeout", 'odd "name"\u00e9'])
@pytest.mark.parametrize("value", [0, 1, 2.5, 0.1 + 0.2, 1e-7, 10**20, True, float("nan")])
def test_event_line_is_the_encoded_document_byte_for_byte(event, error_type, value):
    values = dict.fromkeys(EVENTS[event], value)
    common = {"environment": "prod", "endpoint": "analyze", "error_type": error_type}
    expected = to_line(build_event(event, values, timestamp_ms=1234, **common))
    assert event_line(event, values, timestamp_ms=1234, **common) == expected


def test_event_line_without_its_metrics_is_refused():
    with pytest.raises(ValueError, match="TotalPromptTokens"):
        event_line("analysis_started", {"CacheHit": 1}, environment="prod", endpoint="analyze")


def test_file_sink_follows_a_rotated_file(tmp_path, monkeypatch):
    path = tmp_path / "emf.log"
    emitter = EmfEmitter(Settings(emf_file=path, env="prod"))
    emitter.emit("analysis_requested", {"CodeLengthChars": 1, "EstimatedInputTokens": 1})
    path.rename(tmp_path / "emf.log.1")  # logrotate: rename, then a new file is created
    monkeypatch.setattr("iris_service.emf.REOPEN_CHECK_S", 0.0)
    emitter.emit("analysis_requested", {"CodeLengthChars": 2, "EstimatedInputTokens": 1})
    old = (tmp_path / "emf.log.1").read_text().splitlines()
    assert [json.loads(line)["CodeLengthChars"] for line in old] == [1]
    assert [json.loads(line)["CodeLengthChars"] for line in path.read_text().splitlines()] == [2]
    assert emitter.dropped == 0


def test_listener_down_never_fails_and_backs_off(monkeypatch):
    emitter = EmfEmitter(Settings(emf_endpoint=f"tcp://127.0.0.1:{free_port()}"))
    attempts = []
    real_connect = emitter._connect

    def counting_connect():
        attempts.append(1)
        return real_connect()

    monkeypatch.setattr(emitter, "_connect", counting_connect)
    for _ in range(20):
        emitter.emit("analysis_requested", {"CodeLengthChars": 1, "EstimatedInputTokens": 1})
    assert len(attempts) == 1  # one refused connect, then the back-off skips the rest
    assert emitter.dropped == 20


def test_analysis_succeeds_with_the_listener_down(make_client, settings):
    down = f"tcp://127.0.0.1:{free_port()}"
    client = make_client(settings.with_changes(emf_file=None, emf_endpoint=down))
    response = client.post("/api/iris/analyze", json=analyze_body(sample_source()))
    assert response.status_code == 200


def test_emitter_reconnects_after_listener_restart(emf_listener):
    emitter = EmfEmitter(Settings(emf_endpoint=emf_listener.endpoint))
    emitter.emit("analysis_requested", {"CodeLengthChars": 1, "EstimatedInputTokens": 1})
    emitter.close()
    emitter.emit("analysis_requested", {"CodeLengthChars": 2, "EstimatedInputTokens": 1})
    events = emf_listener.wait_for(2)
    # two connections, each served by a thread of its own: their lines may arrive either way
    assert sorted(e["CodeLengthChars"] for e in events) == [1, 2]


def test_a_bug_is_reported_as_internal_error(client, settings, monkeypatch):
    service = client.application.extensions["iris"]

    def boom(*_args):
        raise RuntimeError("bug")

    monkeypatch.setattr(service, "analyze", boom)
    assert client.post("/api/iris/analyze", json=analyze_body("x = 1\n")).status_code == 500
    [event] = [json.loads(line) for line in settings.emf_file.read_text().splitlines()]
    assert event["event"] == "analysis_failed" and event["ErrorType"] == "InternalError"


def test_a_cache_hits_three_events_are_one_write(make_client, settings, monkeypatch):
    client = make_client(settings)
    body = analyze_body(sample_source("one-write"))
    assert client.post("/api/iris/analyze", json=body).status_code == 200  # the miss
    writes: list[bytes] = []
    real_write = os.write

    def recording(fd: int, data: bytes) -> int:
        if b'"_aws"' in data:
            writes.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", recording)
    assert client.post("/api/iris/analyze", json=body).get_json()["metadata"]["cache_hit"] == 1
    assert len(writes) == 1
    events = [json.loads(line)["event"] for line in writes[0].splitlines()]
    assert events == ["analysis_requested", "analysis_started", "analysis_completed"]
