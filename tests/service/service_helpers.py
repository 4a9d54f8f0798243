"""Helpers shared by the service tests (a plainly named module: import service_helpers)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any


def analyze_body(source: str, language: str = "python", **extra: Any) -> dict[str, Any]:
    return {"filename": "example.py", "language": language, "source_code": source, **extra}


def sample_source(tag: str = "", functions: int = 3) -> str:
    """A small Python file; ``tag`` makes distinct files."""
    lines = ['"""Sample module."""', "", "import os", ""]
    for index in range(functions):
        lines += [
            "",
            f"def function_{index}_{tag or 'x'}(value):",
            f"    # work number {index}",
            "    total = value * 2",
            "    return total + len(os.sep)",
        ]
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def numbered(source: str) -> str:
    """The VS Code client's format: every line \"<n> | <code>\"."""
    lines = source.rstrip("\n").split("\n")
    return "\n".join(f"{n} | {line}" for n, line in enumerate(lines, start=1))


def wait_until(condition: Callable[[], Any], timeout: float = 60.0, poll_s: float = 0.02) -> Any:
    """``condition()``'s first truthy value, polling until ``timeout``; its last value then.

    The bound is only against a hang: on a loaded CI machine a process start can take seconds.
    """
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= end:
            return value
        time.sleep(poll_s)
