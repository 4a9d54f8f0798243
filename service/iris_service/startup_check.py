"""Refuse to start on a bad environment: one clear line, then a non-zero exit.

Run by gunicorn's master (``on_starting`` in gunicorn_conf) before it binds or forks, so a
typo such as ``IRIS_ENV=production`` stops the service at once with a single line, instead of
every worker dying with a traceback while gunicorn restarts it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

# sysexits.h EX_CONFIG; systemd shows it as status=78/CONFIG.
EXIT_BAD_CONFIG = 78


def config_problem(environ: Mapping[str, str] | None = None) -> str | None:
    """Why the environment cannot run the service (``None`` when it can)."""
    # Imported here: the master should not load Flask (via errors) unless it has to.
    from iris_service.config import Settings
    from iris_service.errors import ConfigError

    try:
        Settings.from_env(environ)
    except ConfigError as error:
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
