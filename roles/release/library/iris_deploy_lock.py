#!/usr/bin/python
"""The host's deploy lock: taken with one exclusive create, so two deploys never both hold it."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: iris_deploy_lock
short_description: Take, check or release the IRIS deploy lock atomically
description:
  - The lock is a JSON file created with O_CREAT|O_EXCL, so of two deploys that start at the
    same instant exactly one takes it. A refusal is data (C(acquired=false) with the holder),
    never a failed task, so callers decide how to report it.
options:
  path:
    description: Lock file.
    type: path
    required: true
  state:
    description: C(present) takes the lock (or confirms it already holds it with the same
      token), C(absent) releases it when the token matches (or always with I(force)),
      C(query) only reads it.
    type: str
    choices: [present, absent, query]
    default: present
  token:
    description: Identifies one deploy; the same token taking the lock again is a no-op.
    type: str
    default: ""
  holder:
    description: Who takes the lock (user@host), shown to anyone it refuses.
    type: str
    default: unknown
  version:
    description: The release the holder is deploying.
    type: str
    default: ""
  force:
    description: With C(present), replace a lock someone else holds; with C(absent), remove
      it whoever holds it.
    type: bool
    default: false
"""

RETURN = r"""
acquired:
  description: The lock is held with I(token) after this call (C(present)).
  type: bool
lock:
  description: The lock's content before this call (holder, since, version, token), or null.
  type: dict
age_seconds:
  description: Seconds since the lock in I(lock) was taken, or null.
  type: int
removed:
  description: The lock file was removed (C(absent)).
  type: bool
"""

import contextlib
import datetime
import json
import os

from ansible.module_utils.basic import AnsibleModule

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def read_lock(path):
    """The lock's content, or None when there is no lock; a damaged lock still counts as held."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return None
    try:
        content = json.loads(raw)
    except ValueError:
        content = None
    if not isinstance(content, dict):
        content = {"holder": "unknown (unreadable lock file)", "raw": raw[:200]}
    return content


def age_seconds(lock, now):
    try:
        since = datetime.datetime.strptime(lock.get("since", ""), TIME_FORMAT)
    except (TypeError, ValueError):
        return None
    return max(0, int((now - since.replace(tzinfo=datetime.timezone.utc)).total_seconds()))


def try_create(path, content):
    """Create the lock file only if it does not exist: the one atomic step."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(content) + "\n")
    return True


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "state": {
                "type": "str",
                "choices": ["present", "absent", "query"],
                "default": "present",
            },
            "token": {"type": "str", "default": "", "no_log": False},
            "holder": {"type": "str", "default": "unknown"},
            "version": {"type": "str", "default": ""},
            "force": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    params = module.params
    path, state, token = params["path"], params["state"], params["token"]
    now = datetime.datetime.now(datetime.timezone.utc)
    existing = read_lock(path)
    result = {
        "changed": False,
        "lock": existing,
        "age_seconds": age_seconds(existing, now) if existing else None,
    }

    if state == "query":
        module.exit_json(**result)

    if state == "absent":
        mine = existing is not None and token and existing.get("token") == token
        removable = existing is not None and (mine or params["force"])
        if removable and not module.check_mode:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        result.update(removed=bool(removable), changed=bool(removable))
        module.exit_json(**result)

    if not token:
        module.fail_json(msg="taking the deploy lock needs a token", **result)
    if existing is not None and existing.get("token") == token:
        module.exit_json(acquired=True, **result)
    if existing is not None and params["force"] and not module.check_mode:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        existing = None
    if existing is not None:
        module.exit_json(acquired=False, **result)
    if module.check_mode:
        module.exit_json(acquired=True, **result)
    content = {
        "holder": params["holder"],
        "since": now.strftime(TIME_FORMAT),
        "version": params["version"],
        "token": token,
    }
    acquired = try_create(path, content)
    if not acquired:  # another deploy created it between our read and our create
        existing = read_lock(path)
        result.update(lock=existing, age_seconds=age_seconds(existing or {}, now))
    # The lock only lives while a deploy runs: taking it is not a change to the host.
    module.exit_json(acquired=acquired, **result)


if __name__ == "__main__":
    main()
