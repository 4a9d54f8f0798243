"""``irisctl`` run as the operator runs it (no terminal), with moto in server mode as AWS: the
one way the AWS test files start it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from irisctl.sandbox.aws_standin import moto_environment

IRISCTL = str(Path(sys.executable).parent / "irisctl")
# Only against a hang: a whole AWS play under a full CI run takes minutes.
IRISCTL_TIMEOUT_S = 900


def aws_env(moto_url: str, **extra: str) -> dict[str, str]:
    """This process's environment pointed at moto, without an operator's inventory."""
    env = moto_environment(dict(os.environ), moto_url)
    env.pop("IRISCTL_INVENTORY", None)
    return {**env, **extra}


def run(inventory: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [IRISCTL, "-i", str(inventory), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=IRISCTL_TIMEOUT_S,
    )


def stdout_json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON document on stdout; {} when there is none."""
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return json.loads("\n".join(lines)) if lines else {}
