"""Settings are read once from the environment, with the documented defaults."""

from pathlib import Path

import pytest
from iris_service.config import Settings
from iris_service.errors import ConfigError


def test_defaults_match_the_design_document():
    settings = Settings.from_env({})
    assert settings.env == "dev" and settings.api_keys == ()
    assert settings.cache_dir == Path(".iris")
    assert settings.disk_cache_dir == Path(".iris/cache")
    assert settings.metrics_file == Path(".iris/metrics.json")
    assert settings.memory_cache_entries == 500 and settings.cache_ttl_days == 30
    assert settings.max_body_bytes == 2 * 1024 * 1024
    assert settings.model == "gpt-5-nano-2025-08-07" and settings.reasoning_effort == "minimal"
    assert (settings.price_input_per_m, settings.price_cached_input_per_m) == (0.05, 0.005)
    assert settings.price_output_per_m == 0.40
    assert settings.openai_secret_id == "iris/openai-api-key"
    assert settings.aws_region == "us-east-2"
    assert settings.emf_endpoint == "tcp://127.0.0.1:25888" and settings.emf_file is None
    assert settings.cors_origins == ()
    assert settings.request_deadline_s < 120


def test_environment_overrides():
    settings = Settings.from_env(
        {
            "IRIS_ENV": "prod",
            "IRIS_API_KEY": "a, b,,",
            "IRIS_CACHE_DIR": "/var/iris",
            "IRIS_CORS_ORIGINS": "https://a.example,https://b.example",
            "IRIS_MODEL": "m",
            "IRIS_MODEL_RETRIES": "3",
            "IRIS_MODEL_TIMEOUT_S": "7.5",
            "IRIS_EMF_FILE": "/tmp/emf.log",
            "IRIS_PRICE_OUTPUT_PER_M": "1.5",
        }
    )
    assert settings.is_prod and settings.api_keys == ("a", "b")
    assert settings.metrics_file == Path("/var/iris/metrics.json")
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert (settings.model, settings.model_retries, settings.model_timeout_s) == ("m", 3, 7.5)
    assert settings.emf_file == Path("/tmp/emf.log") and settings.price_output_per_m == 1.5


@pytest.mark.parametrize("value", ["production", "Prod", "PROD", "development", "staging"])
def test_iris_env_accepts_only_its_documented_values(value):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"IRIS_ENV": value, "IRIS_API_KEY": "k"})
    assert str(raised.value) == f"IRIS_ENV={value!r} is not one of dev, prod"


@pytest.mark.parametrize("keys", [None, "", " , "])
def test_prod_without_client_key_is_refused(keys):
    environ = {"IRIS_ENV": "prod"} if keys is None else {"IRIS_ENV": "prod", "IRIS_API_KEY": keys}
    with pytest.raises(ConfigError, match="^IRIS_ENV=prod needs IRIS_API_KEY"):
        Settings.from_env(environ)


def test_dev_is_the_default_and_prod_with_a_key_is_accepted():
    assert Settings.from_env({"IRIS_ENV": ""}).env == "dev"
    assert Settings.from_env({"IRIS_ENV": " dev "}).env == "dev"
    prod = Settings.from_env({"IRIS_ENV": "prod", "IRIS_API_KEY": "k"})
    assert prod.is_prod and not prod.auth_misconfigured


def test_settings_built_in_code_still_flag_prod_without_a_key():
    assert Settings(env="prod", api_keys=()).auth_misconfigured


def test_startup_check_names_the_problem_or_nothing():
    from iris_service.startup_check import config_problem

    assert config_problem({"IRIS_ENV": "prod", "IRIS_API_KEY": "k"}) is None
    assert config_problem({"IRIS_ENV": "production"}) == (
        "IRIS_ENV='production' is not one of dev, prod"
    )


@pytest.mark.parametrize(
    "name, value",
    [
        ("IRIS_MODEL_RETRIES", "many"),
        ("IRIS_MAX_BODY_BYTES", "0"),
        ("IRIS_REQUEST_DEADLINE_S", "300"),
        ("IRIS_CACHE_TTL_DAYS", "-1"),
    ],
)
def test_bad_values_are_refused_at_start(name, value):
    with pytest.raises(ConfigError):
        Settings.from_env({name: value})


def test_keys_are_not_in_the_repr():
    settings = Settings.from_env({"IRIS_API_KEY": "client-secret", "OPENAI_API_KEY": "sk-x"})
    assert "client-secret" not in repr(settings) and "sk-x" not in repr(settings)


def test_env_file_check_accepts_what_the_host_role_writes_and_refuses_a_typo(tmp_path):
    import subprocess
    import sys

    good = tmp_path / "good.env"
    good.write_text('# managed\nIRIS_ENV="prod"\nIRIS_API_KEY="k1,k2"\nIRIS_CACHE_DIR="/var/x"\n')
    bad = tmp_path / "bad.env"
    bad.write_text('IRIS_ENV="production"\nIRIS_API_KEY="k1"\n')
    keyless = tmp_path / "keyless.env"
    keyless.write_text('IRIS_ENV="prod"\n')

    def check(path):
        return subprocess.run(
            [sys.executable, "-m", "iris_service.startup_check", "--env-file", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert check(good).returncode == 0
    refused = check(bad)
    assert refused.returncode == 78
    assert refused.stderr.strip().splitlines() == [
        "the service would refuse this environment: IRIS_ENV='production' is not one of dev, prod"
    ]
    assert "IRIS_API_KEY" in check(keyless).stderr
