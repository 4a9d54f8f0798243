"""The model stand-in speaks enough of the Responses API for the real openai SDK."""

import json
import subprocess
import sys
import time

import openai
import pytest
import requests
from iris_service.model_contract import RESPONSE_SCHEMA
from service_helpers import free_port


def sdk(standin, key="sk-test"):
    return openai.OpenAI(api_key=key, base_url=standin.base_url, max_retries=0, timeout=10)


def create(client, source_lines):
    numbered = "\n".join(f"{n} | {line}" for n, line in enumerate(source_lines, start=1))
    return client.responses.create(
        model="gpt-5-nano-2025-08-07",
        instructions="Explain the file.",
        input="Language: python\n\n" + numbered,
        text={
            "format": {
                "type": "json_schema",
                "name": "iris_analysis",
                "strict": True,
                "schema": RESPONSE_SCHEMA,
            }
        },
    )


def test_sdk_gets_a_response_with_usage_and_structured_text(standin):
    lines = ["import os", "", "", "def main():", "    print(os.name)"] + ["x = 1"] * 20
    response = create(sdk(standin), lines)
    data = json.loads(response.output_text)
    assert data["file_intent"]
    assert data["responsibility_blocks"][0]["ranges"][0][0] == 1
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    assert response.status == "completed"
    assert standin.calls() == 1


def test_analysis_is_deterministic(standin):
    lines = ["import os", "class A:", "    pass", "def f():", "    return 1"] * 5
    first = create(sdk(standin), lines).output_text
    assert create(sdk(standin), lines).output_text == first


def test_missing_bearer_token_is_401(standin):
    response = requests.post(standin.base_url + "/responses", json={}, timeout=5)
    assert response.status_code == 401
    assert standin.calls() == 0


def test_global_and_per_request_controls(standin):
    assert requests.post(standin.url + "/_standin/config", json={"mode": "error500"}, timeout=5).ok
    with pytest.raises(openai.InternalServerError):
        create(sdk(standin), ["x = 1"])
    standin.configure(mode="ok")
    with pytest.raises(openai.BadRequestError):
        create(sdk(standin), ["x = 1", "# IRIS-STANDIN: mode=error400"])
    garbage = create(sdk(standin), ["# IRIS-STANDIN: mode=garbage"])
    with pytest.raises(ValueError):
        json.loads(garbage.output_text)
    stats = requests.get(standin.url + "/_standin/stats", timeout=5).json()
    assert stats["calls"] == 3 and stats["calls_by_client"] == {"127.0.0.1": 3}
    assert requests.post(standin.url + "/_standin/reset", timeout=5).ok
    stats = requests.get(standin.url + "/_standin/stats", timeout=5).json()
    assert stats["calls"] == 0 and stats["calls_by_client"] == {}
    assert requests.post(standin.url + "/_standin/config", json={"mode": "nope"}).status_code == 400


def test_delay_marker_makes_the_call_slow_enough_to_time_out(standin):
    client = openai.OpenAI(api_key="k", base_url=standin.base_url, max_retries=0, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        create(client, ["# IRIS-STANDIN: delay=2"])


def test_runs_as_a_module(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "irisctl.sandbox.model_standin", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert "listening" in process.stdout.readline()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                stats = requests.get(f"http://127.0.0.1:{port}/_standin/stats", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert stats.json()["calls"] == 0
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_listen_backlog_takes_a_burst_of_model_calls(standin):
    """socketserver's default backlog (5) made bursts of concurrent model calls wait for SYN
    retries; ``ss`` shows a listening socket's backlog in its Send-Q column."""
    port = standin.server.server_address[1]
    done = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    )
    backlog = int(done.stdout.split()[2])
    assert backlog >= 1024, done.stdout
