"""Refuse to start on a bad environment: one clear line, then a non-zero exit.

Run by gunicorn's master (``on_starting`` in gunicorn_conf) before it binds or forks, so a
typo such as ``IRIS_ENV=production`` stops the service at once with a single line, instead of
every worker dying with a traceback while gunicorn restarts it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

# sysexits.h EX_CONFIG; systemd shows it as status=78/CONFIG.
EXIT_BAD_CONFIG = 78


def config_problem(environ: Mapping[str, str] | None = None) -> str | None:
    """Why the environment cannot run the service (``None`` when it can)."""
    # Imported here: the master should not load Flask (via errors) unless it has to.
    from iris_service.api_keys import KeysFileError, load_keys_file
    from iris_service.config import Settings
    from iris_service.errors import ConfigError
    from iris_service.rate_limits import open_storage

    try:
        settings = Settings.from_env(environ)
        if settings.api_keys_file is not None:
            load_keys_file(settings.api_keys_file)  # a bad file never means "no keys"
        open_storage(settings.limits_storage_uri)
    except (ConfigError, KeysFileError) as error:
        return str(error)
    return None


def refuse_bad_config(server) -> None:
    """Log why and exit ``EXIT_BAD_CONFIG`` when the environment is unusable."""
    problem = config_problem()
    if problem is None:
        return
    line = f"refusing to start: {problem}"
    server.log.error(line)
    if server.cfg.errorlog != "-":
        # The error log is a file on hosts; the journal (systemd's view) gets the line too.
        print(f"iris-backend: {line}", file=sys.stderr, flush=True)
    sys.exit(EXIT_BAD_CONFIG)


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of a systemd EnvironmentFile as the host role writes it (``NAME="value"``
    lines, ``#`` comments)."""
    env: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        name, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        env[name.strip()] = value
    return env


def main(argv: list[str] | None = None) -> int:
    """``python -m iris_service.startup_check --env-file PATH``: would the service start with
    this environment file? The host role runs it on a new env file before installing it."""
    parser = argparse.ArgumentParser(prog="python -m iris_service.startup_check")
    parser.add_argument("--env-file", type=Path, required=True)
    args = parser.parse_args(argv)
    problem = config_problem(read_env_file(args.env_file))
    if problem is None:
        return 0
    print(f"the service would refuse this environment: {problem}", file=sys.stderr)
    return EXIT_BAD_CONFIG


if __name__ == "__main__":
    sys.exit(main())
