"""Route-level behaviour with the Flask test client; the model is the stand-in over HTTP."""

import json

import pytest
from iris_service.agent import Agent
from iris_service.ranges import validate_blocks
from iris_service.secrets import SecretError
from iris_service.source import line_count
from service_helpers import analyze_body, free_port, numbered, sample_source

ANALYZE = "/api/iris/analyze"


def test_analysis_has_the_client_contract_shape(client, standin):
    source = sample_source()
    response = client.post(ANALYZE, json=analyze_body(source, metadata={"client": "vscode"}))
    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is True
    assert isinstance(body["file_intent"], str) and body["file_intent"]
    assert body["responsibility_blocks"]
    for block in body["responsibility_blocks"]:
        assert set(block) == {"label", "description", "ranges"}
    validate_blocks(body["responsibility_blocks"], line_count(source))
    metadata = body["metadata"]
    assert metadata["client"] == "vscode"
    assert metadata["cache_hit"] == 0
    assert metadata["input_tokens"] > 0 and metadata["output_tokens"] > 0
    assert metadata["estimated_cost_usd"] > 0
    assert standin.calls() == 1


def test_second_identical_request_is_a_cache_hit(client, standin):
    body = analyze_body(sample_source())
    first = client.post(ANALYZE, json=body).get_json()
    second = client.post(ANALYZE, json=body).get_json()
    assert second["metadata"]["cache_hit"] == 1
    assert second["metadata"]["estimated_cost_usd"] == 0.0
    assert second["responsibility_blocks"] == first["responsibility_blocks"]
    assert standin.calls() == 1


def test_client_numbering_is_stripped_before_prompting(client, standin):
    source = sample_source()
    response = client.post(ANALYZE, json=analyze_body(numbered(source)))
    assert response.status_code == 200
    prompt = standin.last_request()["input"]
    assert "1 | " + source.split("\n")[0] in prompt
    assert "1 | 1 | " not in prompt


def test_numbered_and_plain_copies_share_one_cache_entry(client, standin):
    source = sample_source()
    client.post(ANALYZE, json=analyze_body(numbered(source)))
    second = client.post(ANALYZE, json=analyze_body(source)).get_json()
    assert second["metadata"]["cache_hit"] == 1
    assert standin.calls() == 1


@pytest.mark.parametrize("source", ["", "   \n\t\n  "])
def test_empty_source_is_answered_without_a_model_call(client, standin, source):
    body = client.post(ANALYZE, json=analyze_body(source, metadata={"m": 1})).get_json()
    assert body["success"] is True
    assert body["file_intent"] == "Empty file"
    assert body["responsibility_blocks"] == []
    assert body["metadata"]["skipped"] == "empty_file"
    assert body["metadata"]["m"] == 1
    assert standin.calls() == 0


@pytest.mark.parametrize("source", ["1 | ", "1 | \n", "1 |   \n2 | \t\n3 | "])
def test_numbered_empty_source_is_answered_without_a_model_call(client, standin, source):
    response = client.post(ANALYZE, json=analyze_body(source))
    assert response.status_code == 200
    body = response.get_json()
    assert body["file_intent"] == "Empty file"
    assert body["responsibility_blocks"] == []
    assert body["metadata"]["skipped"] == "empty_file"
    assert standin.calls() == 0


def test_model_bad_ranges_are_cleaned_into_valid_ones(client, standin):
    source = sample_source() + "# IRIS-STANDIN: mode=bad_ranges\n"
    response = client.post(ANALYZE, json=analyze_body(source))
    assert response.status_code == 200
    blocks = response.get_json()["responsibility_blocks"]
    assert blocks
    validate_blocks(blocks, line_count(source))


def test_server_fields_override_client_metadata(client):
    body = analyze_body(sample_source(), metadata={"cache_hit": 7, "input_tokens": -1})
    metadata = client.post(ANALYZE, json=body).get_json()["metadata"]
    assert metadata["cache_hit"] == 0 and metadata["input_tokens"] > 0


# --- 400 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["filename", "language", "source_code"])
def test_missing_field_is_400(client, field):
    body = analyze_body("x = 1\n")
    del body[field]
    response = client.post(ANALYZE, json=body)
    assert response.status_code == 400
    assert response.get_json() == {"success": False, "error": f"Missing required field: {field}"}


@pytest.mark.parametrize(
    "field, value",
    [("filename", 3), ("language", ["python"]), ("source_code", {"a": 1}), ("metadata", "x")],
)
def test_field_of_the_wrong_type_is_400(client, field, value):
    response = client.post(ANALYZE, json={**analyze_body("x = 1\n"), field: value})
    assert response.status_code == 400
    assert field in response.get_json()["error"]


def test_unsupported_language_is_400(client, standin):
    response = client.post(ANALYZE, json=analyze_body("x = 1\n", language="cobol"))
    assert response.status_code == 400
    assert "Unsupported language" in response.get_json()["error"]
    assert standin.calls() == 0


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"{not json", "Request body is not valid JSON"),
        (b"", "Request body is not valid JSON"),
        (b"[1, 2]", "Request body must be a JSON object"),
        (b'"text"', "Request body must be a JSON object"),
    ],
)
def test_body_that_is_not_a_json_object_is_400(client, raw, message):
    response = client.post(ANALYZE, data=raw, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json() == {"success": False, "error": message}


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/x-www-form-urlencoded"])
def test_json_body_without_a_json_content_type_is_400(client, standin, content_type):
    raw = json.dumps(analyze_body("x = 1\n"))
    response = client.post(ANALYZE, data=raw, content_type=content_type)
    assert response.status_code == 400
    assert response.get_json() == {
        "success": False,
        "error": "Content-Type must be application/json",
    }
    assert standin.calls() == 0


def test_absurdly_nested_json_is_400_not_500(client):
    response = client.post(
        ANALYZE, data="[" * 100_000 + "]" * 100_000, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.get_json() == {"success": False, "error": "Request body is not valid JSON"}


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_400_so_metadata_never_echoes_invalid_json(client, number):
    raw = '{"filename": "a.py", "language": "python", "source_code": "", "metadata": {"x": %s}}'
    response = client.post(ANALYZE, data=raw % number, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json() == {"success": False, "error": "Request body is not valid JSON"}


def test_lone_surrogate_in_source_is_400_not_500(client, standin):
    raw = '{"filename": "a.py", "language": "python", "source_code": "s = \\"\\ud800\\"\\n"}'
    response = client.post(ANALYZE, data=raw, content_type="application/json")
    assert response.status_code == 400
    assert "source_code" in response.get_json()["error"]
    assert standin.calls() == 0


def test_null_metadata_is_treated_as_absent(client):
    response = client.post(ANALYZE, json=analyze_body("x = 1\n", metadata=None))
    assert response.status_code == 200


# --- 401 and auth modes -----------------------------------------------------------------------


def test_missing_key_is_401(make_client, settings):
    client = make_client(settings.with_changes(api_keys=("k1",)))
    response = client.post(ANALYZE, json=analyze_body("x = 1\n"))
    assert response.status_code == 401
    assert response.get_json() == {"success": False, "error": "Missing x-api-key header"}


def test_wrong_key_is_401(make_client, settings):
    client = make_client(settings.with_changes(api_keys=("k1",)))
    response = client.post(ANALYZE, json=analyze_body("x = 1\n"), headers={"x-api-key": "k2"})
    assert response.status_code == 401
    assert response.get_json() == {"success": False, "error": "Invalid API key"}


def test_every_rotated_key_is_accepted(make_client, settings, monkeypatch):
    monkeypatch.setenv("IRIS_API_KEY", "old-key, new-key")
    from iris_service.config import Settings

    keys = Settings.from_env().api_keys
    client = make_client(settings.with_changes(api_keys=keys))
    for key in ("old-key", "new-key"):
        response = client.post(ANALYZE, json=analyze_body("x = 1\n"), headers={"x-api-key": key})
        assert response.status_code == 200


def test_dev_without_key_is_open(client):
    assert client.post(ANALYZE, json=analyze_body("x = 1\n")).status_code == 200


def test_prod_without_key_refuses_analysis_and_fails_health(make_client, settings):
    client = make_client(settings.with_changes(env="prod", api_keys=()))
    response = client.post(ANALYZE, json=analyze_body("x = 1\n"), headers={"x-api-key": "x"})
    assert response.status_code == 503
    assert response.get_json()["success"] is False
    health = client.get("/api/iris/health")
    assert health.status_code == 503
    assert health.get_json()["status"] != "ok"


def test_health_needs_no_key_and_reports_version(make_client, settings):
    from iris_service import __version__

    client = make_client(settings.with_changes(api_keys=("k1",), env="prod"))
    response = client.get("/api/iris/health")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ok",
        "agent_ready": True,
        "agent_error": False,
        "version": __version__,
    }


# --- 413 ------------------------------------------------------------------------------------


def test_body_over_the_limit_is_413(make_client, settings, standin):
    client = make_client(settings.with_changes(max_body_bytes=1000))
    response = client.post(ANALYZE, json=analyze_body("x = 1\n" * 500))
    assert response.status_code == 413
    assert response.get_json() == {"success": False, "error": "Request body too large"}
    assert standin.calls() == 0


def test_default_body_limit_is_well_under_nginx_10mb(settings):
    assert settings.max_body_bytes <= 5 * 1024 * 1024


# --- 5xx ------------------------------------------------------------------------------------


def test_unconfigured_model_client_is_503(client, settings):
    def no_key(_settings):
        raise SecretError("cannot read secret")

    client.application.extensions["iris"].agent = Agent(settings, key_loader=no_key)
    response = client.post(ANALYZE, json=analyze_body("x = 1\n"))
    assert response.status_code == 503
    assert "not configured" in response.get_json()["error"]
    health = client.get("/api/iris/health")
    assert health.status_code == 503
    assert health.get_json()["agent_error"] is True
    assert health.get_json()["agent_ready"] is False


def test_cache_hits_are_served_while_the_model_client_is_unavailable(client, settings):
    body = analyze_body(sample_source())
    assert client.post(ANALYZE, json=body).status_code == 200

    def no_key(_settings):
        raise SecretError("cannot read secret")

    client.application.extensions["iris"].agent = Agent(settings, key_loader=no_key)
    assert client.post(ANALYZE, json=body).get_json()["metadata"]["cache_hit"] == 1


def test_model_timeout_is_504(make_client, settings, standin):
    client = make_client(settings.with_changes(model_timeout_s=0.3))
    source = "x = 1\n# IRIS-STANDIN: delay=2\n"
    response = client.post(ANALYZE, json=analyze_body(source))
    assert response.status_code == 504
    assert response.get_json() == {"success": False, "error": "Model call timed out"}


def test_retries_stop_at_the_request_deadline(make_client, settings, standin):
    client = make_client(
        settings.with_changes(model_timeout_s=30, model_retries=5, request_deadline_s=1.0)
    )
    response = client.post(ANALYZE, json=analyze_body("x = 1\n# IRIS-STANDIN: delay=3\n"))
    assert response.status_code == 504
    assert standin.calls() == 1  # the deadline left no time for a retry


def test_model_server_error_is_502_after_retries(make_client, settings, standin):
    client = make_client(settings.with_changes(model_retries=2))
    response = client.post(ANALYZE, json=analyze_body("x = 1\n# IRIS-STANDIN: mode=error500\n"))
    assert response.status_code == 502
    assert response.get_json()["error"] == "Model returned an error (HTTP 500)"
    assert standin.calls() == 3


def test_model_request_error_is_502_without_retry(make_client, settings, standin):
    client = make_client(settings.with_changes(model_retries=2))
    response = client.post(ANALYZE, json=analyze_body("x = 1\n# IRIS-STANDIN: mode=error400\n"))
    assert response.status_code == 502
    assert standin.calls() == 1


@pytest.mark.parametrize("mode", ["garbage", "incomplete"])
def test_unusable_model_answer_is_502(client, standin, mode):
    response = client.post(ANALYZE, json=analyze_body(f"x = 1\n# IRIS-STANDIN: mode={mode}\n"))
    assert response.status_code == 502
    assert response.get_json()["error"].startswith("Model answer unusable")


def test_failures_are_not_cached(client, standin):
    standin.configure(mode="error500")
    body = analyze_body(sample_source())
    assert client.post(ANALYZE, json=body).status_code == 502
    standin.configure(mode="ok")
    response = client.post(ANALYZE, json=body).get_json()
    assert response["metadata"]["cache_hit"] == 0
    assert standin.calls() == 2


def test_unreachable_model_is_502(make_client, settings):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    client = make_client(settings.with_changes(openai_base_url=dead))
    response = client.post(ANALYZE, json=analyze_body("x = 1\n"))
    assert response.status_code == 502
    assert response.get_json()["success"] is False


@pytest.fixture
def odd_upstream():
    """A model endpoint answering 200 with something that is not a Response object."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    answer = {"body": b"", "type": ""}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", answer["type"])
            self.send_header("Content-Length", str(len(answer["body"])))
            self.end_headers()
            self.wfile.write(answer["body"])

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1", answer
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "body, content_type",
    [(b"<html>Bad gateway</html>", "text/html"), (b"[1, 2]", "application/json")],
)
def test_model_200_that_is_not_a_response_is_502(
    make_client, settings, odd_upstream, body, content_type
):
    url, answer = odd_upstream
    answer.update(body=body, type=content_type)
    client = make_client(settings.with_changes(openai_base_url=url))
    response = client.post(ANALYZE, json=analyze_body("x = 1\n"))
    assert response.status_code == 502
    assert response.get_json()["error"].startswith("Model answer unusable")


def test_a_bug_is_a_json_500(client, monkeypatch):
    def boom(_raw):
        raise RuntimeError("bug")

    monkeypatch.setattr(client.application.extensions["iris"], "handle", boom)
    response = client.post(ANALYZE, json=analyze_body("x = 1\n"))
    assert response.status_code == 500
    assert response.get_json() == {"success": False, "error": "Internal server error"}


@pytest.mark.parametrize(
    "method, path, status",
    [("GET", "/nope", 404), ("GET", ANALYZE, 405), ("DELETE", "/api/iris/health", 405)],
)
def test_unknown_routes_and_methods_are_json(client, method, path, status):
    response = client.open(path, method=method)
    assert response.status_code == status
    assert response.is_json
    assert response.get_json()["success"] is False


# --- CORS -----------------------------------------------------------------------------------


def test_no_cors_headers_by_default(client):
    response = client.post(
        ANALYZE, json=analyze_body("x = 1\n"), headers={"Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in response.headers


def test_configured_cors_origin_is_allowed(make_client, settings):
    client = make_client(
        settings.with_changes(cors_origins=("https://ok.example",), api_keys=("k",))
    )
    preflight = client.options(
        ANALYZE,
        headers={
            "Origin": "https://ok.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-api-key",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://ok.example"
    other = client.get("/api/iris/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_response_is_json_serializable_metadata(client):
    body = client.post(ANALYZE, json=analyze_body("x = 1\n", metadata={"nested": {"a": [1]}}))
    assert json.loads(body.data)["metadata"]["nested"] == {"a": [1]}
