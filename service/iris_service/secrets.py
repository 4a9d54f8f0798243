"""Secrets: the OpenAI key and the shared cache store's password, from the environment, else
from AWS Secrets Manager; never on disk or in logs.

The Secrets Manager call runs in a short-lived child process (``python -m iris_service.secrets
SECRET_ID REGION``) that hands the key back on a pipe (its stdout): boto3 and botocore, ~17 MB
of RSS, are loaded in that child for a second and never in a worker, which keeps them for its
whole life otherwise (two workers: ~35 MB). The key is never in the child's argv or in anybody's
environment, and the child's errors name the secret, never its value.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
from collections.abc import Iterator

from iris_service.config import Settings


class SecretError(RuntimeError):
    """The key could not be obtained; the message names the secret, never its value."""


@contextlib.contextmanager
def _botocore_quiet() -> Iterator[None]:
    """botocore logs response bodies (the secret) at DEBUG: hold it at INFO meanwhile."""
    logger = logging.getLogger("botocore")
    previous = logger.level
    if logger.getEffectiveLevel() < logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.setLevel(previous)


# The JSON field a secret may hold its value in (else the whole secret string is the value).
OPENAI_FIELD = "OPENAI_API_KEY"
CACHE_PASSWORD_FIELD = "password"


def _key_from_secret_string(secret: str, field: str = OPENAI_FIELD) -> str:
    text = secret.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            raise SecretError("secret is neither a plain value nor valid JSON") from None
        value = data.get(field) if isinstance(data, dict) else None
        if not isinstance(value, str) or not value.strip():
            raise SecretError(f'secret JSON has no "{field}" string')
        return value.strip()
    if not text:
        raise SecretError("secret is empty")
    return text


# The child's boto3 config allows 2 attempts of 3 s connect + 5 s read; its imports ~1-2 s.
FETCH_TIMEOUT_S = 30.0
_ERROR_PREFIX = "secret error: "


def fetch_openai_key(settings: Settings) -> str:
    """Return the OpenAI key: ``OPENAI_API_KEY``, else the secret, read by a child process."""
    if settings.openai_api_key:
        return settings.openai_api_key
    return fetch_secret(settings.openai_secret_id, settings.aws_region, OPENAI_FIELD)


def fetch_cache_password(settings: Settings) -> str | None:
    """The shared store's password: ``IRIS_CACHE_PASSWORD``, else the secret
    ``IRIS_CACHE_PASSWORD_SECRET_ID`` (a plain string, or JSON with "password"), else None."""
    if settings.cache_password:
        return settings.cache_password
    if not settings.cache_password_secret_id:
        return None
    return fetch_secret(
        settings.cache_password_secret_id, settings.aws_region, CACHE_PASSWORD_FIELD
    )


def fetch_secret(secret_id: str, region: str, field: str) -> str:
    """The value of ``secret_id``, read by a short-lived child process (see the module doc)."""
    try:
        child = subprocess.run(  # noqa: S603 - our own interpreter and module, no shell
            [sys.executable, "-m", "iris_service.secrets", secret_id, region, field],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=FETCH_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SecretError(
            f"cannot read secret {secret_id!r} from Secrets Manager: {type(error).__name__}"
        ) from None
    if child.returncode != 0:
        lines = child.stderr.decode("utf-8", "replace").strip().splitlines()
        ours = lines[-1] if lines and lines[-1].startswith(_ERROR_PREFIX) else None
        raise SecretError(
            ours[len(_ERROR_PREFIX) :]
            if ours
            else f"cannot read secret {secret_id!r}: the reader exited {child.returncode}"
        )
    return child.stdout.decode("utf-8")


def read_secret(secret_id: str, region: str, field: str = OPENAI_FIELD) -> str:
    """The value in the secret ``secret_id``; boto3 honours AWS_ENDPOINT_URL_SECRETS_MANAGER."""
    import boto3  # imported here: only the short-lived reader process pays for it
    from botocore.config import Config

    config = Config(
        connect_timeout=3, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"}
    )
    try:
        with _botocore_quiet():
            client = boto3.session.Session().client(
                "secretsmanager", region_name=region, config=config
            )
            response = client.get_secret_value(SecretId=secret_id)
    except Exception as error:  # botocore raises many unrelated types; all mean "no key"
        raise SecretError(
            f"cannot read secret {secret_id!r} from Secrets Manager: {type(error).__name__}"
        ) from None
    secret = response.get("SecretString")
    if secret is None:
        raise SecretError(f"secret {secret_id!r} has no SecretString")
    return _key_from_secret_string(secret, field)


def main(argv: list[str] | None = None) -> int:
    """The reader process: the value on stdout (no newline), or one line on stderr and exit 1."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3):
        print(
            f"{_ERROR_PREFIX}usage: python -m iris_service.secrets SECRET_ID REGION [JSON_FIELD]",
            file=sys.stderr,
        )
        return 2
    try:
        key = read_secret(*args)
    except SecretError as error:
        print(f"{_ERROR_PREFIX}{error}", file=sys.stderr)
        return 1
    sys.stdout.write(key)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
