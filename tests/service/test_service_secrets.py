"""The OpenAI key from AWS Secrets Manager (moto in server mode, reached over HTTP)."""

import json
import logging

import boto3
import pytest
from iris_service.config import Settings
from iris_service.secrets import SecretError, fetch_openai_key
from service_helpers import analyze_body, sample_source

SECRET_VALUE = "sk-from-secrets-manager-0123456789"


def put_secret(secret_id: str, value: str) -> None:
    client = boto3.client("secretsmanager", region_name="us-east-2")
    try:
        client.create_secret(Name=secret_id, SecretString=value)
    except client.exceptions.ResourceExistsException:
        client.put_secret_value(SecretId=secret_id, SecretString=value)


@pytest.fixture
def secret_settings(settings, aws_env, request):
    secret_id = f"iris/test-{request.node.name}"[:500]
    return settings.with_changes(openai_api_key=None, openai_secret_id=secret_id)


def test_plain_string_secret(secret_settings):
    put_secret(secret_settings.openai_secret_id, SECRET_VALUE)
    assert fetch_openai_key(secret_settings) == SECRET_VALUE


def test_json_secret(secret_settings):
    put_secret(secret_settings.openai_secret_id, json.dumps({"OPENAI_API_KEY": SECRET_VALUE}))
    assert fetch_openai_key(secret_settings) == SECRET_VALUE


@pytest.mark.parametrize("value", ['{"other": "x"}', "{not json", "   "])
def test_unusable_secret_is_an_error(secret_settings, value):
    put_secret(secret_settings.openai_secret_id, value)
    with pytest.raises(SecretError):
        fetch_openai_key(secret_settings)


def test_environment_key_wins_without_calling_aws(settings, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:1")
    assert fetch_openai_key(settings) == "sk-test-openai"


def test_service_uses_the_secret_for_the_model(make_client, secret_settings, standin):
    put_secret(secret_settings.openai_secret_id, json.dumps({"OPENAI_API_KEY": SECRET_VALUE}))
    client = make_client(secret_settings)
    assert client.get("/api/iris/health").get_json()["agent_ready"] is True
    response = client.post("/api/iris/analyze", json=analyze_body(sample_source()))
    assert response.status_code == 200
    assert standin.calls() == 1


def test_missing_secret_fails_health_and_analysis(make_client, secret_settings, standin):
    client = make_client(secret_settings)  # no such secret in moto
    health = client.get("/api/iris/health")
    assert health.status_code == 503
    assert health.get_json()["agent_error"] is True
    assert health.get_json()["agent_ready"] is False
    response = client.post("/api/iris/analyze", json=analyze_body(sample_source()))
    assert response.status_code == 503
    assert response.get_json()["success"] is False
    assert standin.calls() == 0


def test_unreachable_secrets_manager_fails_health(make_client, settings, monkeypatch):
    from service_helpers import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = make_client(settings.with_changes(openai_api_key=None))
    assert client.get("/api/iris/health").status_code == 503


def test_secret_is_not_logged_or_written(make_client, secret_settings, caplog, tmp_path):
    put_secret(secret_settings.openai_secret_id, SECRET_VALUE)
    caplog.set_level(logging.DEBUG)
    client = make_client(secret_settings)
    client.post("/api/iris/analyze", json=analyze_body(sample_source()))
    assert SECRET_VALUE not in caplog.text
    assert SECRET_VALUE not in repr(secret_settings)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET_VALUE.encode() not in path.read_bytes(), path


def test_secret_is_not_fetched_at_import(monkeypatch):
    import importlib

    import iris_service.app

    calls = []
    monkeypatch.setattr("iris_service.secrets.fetch_openai_key", lambda s: calls.append(s))
    importlib.reload(iris_service.app)
    assert calls == []
    assert Settings().openai_secret_id == "iris/openai-api-key"


def test_the_secret_is_read_without_boto3_in_the_service_process(secret_settings):
    import subprocess
    import sys

    put_secret(secret_settings.openai_secret_id, SECRET_VALUE)
    script = (
        "import sys\n"
        "from iris_service.config import Settings\n"
        "from iris_service.secrets import fetch_openai_key\n"
        f"key = fetch_openai_key(Settings(openai_secret_id={secret_settings.openai_secret_id!r}))\n"
        f"assert key == {SECRET_VALUE!r}, 'wrong key'\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
    assert SECRET_VALUE not in out.stderr


def test_the_reader_says_which_secret_is_missing(secret_settings):
    with pytest.raises(SecretError, match="cannot read secret 'iris/test-.*ResourceNotFound"):
        fetch_openai_key(secret_settings)
