"""Releases that fail their health gate on purpose, one per way a real release fails.

Used to rehearse failed deploys on sandbox hosts (tests and bench/deploy_failures.py): each is
the service's own source with a few lines appended to its app module, which a gunicorn worker
runs when it loads the app.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from irisctl.build import Wheelhouse, build_wheelhouse
from irisctl.paths import service_source_dir

BREAKAGES = {
    # An import error: the worker cannot boot, so gunicorn's master halts.
    "fails-at-import": 'raise RuntimeError("deliberately broken release")\n',
    # Every worker is killed as it loads the app, as the OOM killer would: the master lives on.
    "workers-die": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
    # Loading never ends: the master runs and the socket accepts, but nothing ever answers.
    "never-answers": "import threading\nthreading.Event().wait()\n",
}

# What the health gate calls each of them (library/iris_health_gate.py `failure`).
GATE_FAILURE = {
    "fails-at-import": "exits_at_start",
    "workers-die": "workers_die",
    "never-answers": "no_answer",
}


def build_broken_release(dest: Path, version: str, breakage: str) -> Wheelhouse:
    """A wheelhouse of the current service tree, stamped ``version``, broken as ``breakage``."""
    tree = dest.parent / f"{dest.name}-source"
    shutil.rmtree(tree, ignore_errors=True)
    shutil.copytree(
        service_source_dir(),
        tree,
        ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build"),
    )
    app_module = tree / "iris_service" / "wsgi.py"
    app_module.write_text(app_module.read_text() + "\n" + BREAKAGES[breakage])
    return build_wheelhouse(dest, version=version, source_dir=tree)
