"""Typed operator-facing errors: each one becomes one line on stderr and a documented exit code."""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1  # the operation failed, or the service is unhealthy
EXIT_USAGE = 2  # bad arguments (Click's own code)
EXIT_CONFIG = 3  # no inventory, bad config file, missing local file
EXIT_UNREACHABLE = 4  # host unreachable or SSH refused
EXIT_LOCKED = 5  # another deploy holds the lock on the host

EXIT_CODES_HELP = """\b
Exit codes:
  0  success (for health: healthy)
  1  operation failed, play failed, or service unhealthy
  2  usage error (bad option or argument)
  3  configuration error (no inventory, bad config file, missing file)
  4  host unreachable or SSH refused
  5  deploy locked by someone else (see `irisctl deploy --release-lock`)"""


class IrisctlError(Exception):
    """An error the operator can act on; ``str()`` is the one line shown."""

    exit_code = EXIT_FAILED

    def __init__(
        self,
        message: str,
        details: list[str] | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.details = details or []
        # Structured facts about the failure (who holds a lock, how a release failed): what
        # `--json` prints beside the message.
        self.data = data or {}

    def as_json(self) -> dict[str, Any]:
        return {
            "error": str(self),
            "exit_code": self.exit_code,
            "details": self.details,
            **self.data,
        }


class ConfigError(IrisctlError):
    exit_code = EXIT_CONFIG


class HostUnreachableError(IrisctlError):
    exit_code = EXIT_UNREACHABLE


class DeployLockedError(IrisctlError):
    exit_code = EXIT_LOCKED


class PlayFailedError(IrisctlError):
    """A task failed on a host; ``details`` holds extra lines (e.g. the service log tail)."""


class UnhealthyError(IrisctlError):
    """The service answered but is not healthy."""
