"""The OpenAI key: from the environment, else from AWS Secrets Manager; never on disk or in logs."""

from __future__ import annotations

import contextlib
import json
import logging
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


def _key_from_secret_string(secret: str) -> str:
    text = secret.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            raise SecretError("secret is neither a plain key nor valid JSON") from None
        value = data.get("OPENAI_API_KEY") if isinstance(data, dict) else None
        if not isinstance(value, str) or not value.strip():
            raise SecretError('secret JSON has no "OPENAI_API_KEY" string')
        return value.strip()
    if not text:
        raise SecretError("secret is empty")
    return text


def fetch_openai_key(settings: Settings) -> str:
    """Return the OpenAI key; boto3 honours AWS_ENDPOINT_URL_SECRETS_MANAGER by itself."""
    if settings.openai_api_key:
        return settings.openai_api_key
    import boto3  # imported here: only hosts without OPENAI_API_KEY pay for it
    from botocore.config import Config

    config = Config(
        connect_timeout=3, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"}
    )
    secret_id = settings.openai_secret_id
    try:
        with _botocore_quiet():
            client = boto3.session.Session().client(
                "secretsmanager", region_name=settings.aws_region, config=config
            )
            response = client.get_secret_value(SecretId=secret_id)
    except Exception as error:  # botocore raises many unrelated types; all mean "no key"
        raise SecretError(
            f"cannot read secret {secret_id!r} from Secrets Manager: {type(error).__name__}"
        ) from None
    secret = response.get("SecretString")
    if secret is None:
        raise SecretError(f"secret {secret_id!r} has no SecretString")
    return _key_from_secret_string(secret)
