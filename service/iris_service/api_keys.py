"""Named client keys: the keys file (hashes only) and the key ring every request is checked
against.

The keys file (``IRIS_API_KEYS_FILE``, ``/etc/iris/api_keys.json`` on hosts) is written by
``irisctl keys`` through a play, replaced atomically (rename), and holds for each key its name,
the SHA-256 of the key, when it was made and its own limits::

    {"format": 1, "revision": 3,
     "keys": {"alice": {"sha256": "<64 hex>", "created": "2026-01-31T09:08:07+00:00",
                        "rate_per_minute": 60, "daily_budget_usd": 5.0}}}

The keys in ``IRIS_API_KEY`` (today's single shared key, comma-separated for rotation) are the
key named ``default``. A presented key is hashed once and looked up by its hash, then compared
with ``hmac.compare_digest``; no key is ever kept in clear.

The service re-reads the file when its inode, size or mtime changes (one ``stat`` per
request), so ``keys add/revoke/rotate`` take effect on the next request, without a restart.
A file that cannot be read or parsed keeps the last good set and is logged once; at start-up
it stops the service (``startup_check``).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import math
import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FORMAT = 1
DEFAULT_NAME = "default"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_MAX_FILE_BYTES = 4 * 1024 * 1024


class KeysFileError(ValueError):
    """The keys file cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class ClientKey:
    """One accepted key, without the key itself. ``None`` limits mean the service's defaults."""

    name: str
    rate_per_minute: int | None = None
    daily_budget_usd: float | None = None
    created: str | None = None


def hash_key(presented: str) -> bytes:
    return hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()


def _number(value: Any, where: str, kind: type) -> Any:
    if value is None:
        return None
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and kind is int:
        ok = float(value).is_integer()
    if not ok or not math.isfinite(value) or value < 0:
        raise KeysFileError(f"{where} must be a number >= 0, got {value!r}")
    return kind(value)


def parse_keys(raw: bytes, source: str = "keys file") -> dict[bytes, ClientKey]:
    """The keys of a keys file's bytes by their SHA-256; ``KeysFileError`` names any problem."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise KeysFileError(f"{source} is not valid JSON: {error}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise KeysFileError(f"{source} is not an IRIS keys file (format {FORMAT})")
    entries = data.get("keys")
    if not isinstance(entries, dict):
        raise KeysFileError(f"{source}: 'keys' must be an object of name -> key")
    keys: dict[bytes, ClientKey] = {}
    for name, entry in entries.items():
        where = f"{source}: key {name!r}"
        if not NAME_RE.match(name) or name == DEFAULT_NAME:
            raise KeysFileError(f"{where}: not a valid key name")
        if not isinstance(entry, dict) or not _HEX64.match(str(entry.get("sha256", ""))):
            raise KeysFileError(f"{where}: 'sha256' must be 64 lowercase hex characters")
        digest = bytes.fromhex(entry["sha256"])
        if digest in keys:
            raise KeysFileError(f"{where}: same key as {keys[digest].name!r}")
        keys[digest] = ClientKey(
            name=name,
            rate_per_minute=_number(entry.get("rate_per_minute"), f"{where} rate_per_minute", int),
            daily_budget_usd=_number(
                entry.get("daily_budget_usd"), f"{where} daily_budget_usd", float
            ),
            created=entry.get("created") if isinstance(entry.get("created"), str) else None,
        )
    return keys


def load_keys_file(path: Path) -> dict[bytes, ClientKey]:
    """The keys in ``path``; a missing file holds none. ``KeysFileError`` when unusable."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise KeysFileError(f"cannot read keys file {path}: {error.strerror}") from None
    if len(raw) > _MAX_FILE_BYTES:
        raise KeysFileError(f"keys file {path} is larger than {_MAX_FILE_BYTES} bytes")
    return parse_keys(raw, f"keys file {path}")


def _file_state(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError:  # unreadable directory: treated like an unreadable file (last good set)
        return (-1, -1, -1, -1)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _by_hash(keys: dict[bytes, ClientKey]) -> dict[bytes, tuple[bytes, ClientKey]]:
    return {digest: (digest, key) for digest, key in keys.items()}


class KeyRing:
    """Every accepted key by hash: ``IRIS_API_KEY`` as ``default`` plus the keys file's."""

    def __init__(self, env_keys: tuple[str, ...], path: Path | None) -> None:
        self._default = {hash_key(key): ClientKey(DEFAULT_NAME) for key in env_keys}
        self.path = path
        self._lock = threading.Lock()
        self._state: tuple[int, int, int, int] | None = None
        self._bad_state: tuple[int, int, int, int] | None = None
        self._keys = _by_hash(self._default)
        if path is not None:
            self._state = _file_state(path)
            self._keys = _by_hash({**load_keys_file(path), **self._default})  # may raise

    @property
    def open_access(self) -> bool:
        """Open (dev) only when no key is configured anywhere: a keys file, even a missing or
        empty one, means every request needs a key."""
        return self.path is None and not self._default

    def _refresh(self) -> None:
        assert self.path is not None
        state = _file_state(self.path)
        if state == self._state:
            return
        with self._lock:
            if state == self._state or state == self._bad_state:
                return
            try:
                keys = load_keys_file(self.path)
            except KeysFileError as error:
                self._bad_state = state
                log.error("%s; keeping the last good set of %d keys", error, len(self._keys))
                return
            self._keys = _by_hash({**keys, **self._default})
            self._state = state
            self._bad_state = None
            log.info("keys file %s loaded: %d named keys", self.path, len(keys))

    def lookup(self, presented: str) -> ClientKey | None:
        """The key ``presented`` is, or ``None``."""
        if self.path is not None:
            self._refresh()
        digest = hash_key(presented)
        entry = self._keys.get(digest)
        if entry is None:
            return None
        stored, key = entry
        return key if hmac.compare_digest(stored, digest) else None


def main(argv: list[str] | None = None) -> int:
    """``python -m iris_service.api_keys FILE``: exit 0 when the service would accept FILE
    (the play's ``validate:`` before the file is put in place), else one line and exit 1."""
    parser = argparse.ArgumentParser(prog="python -m iris_service.api_keys")
    parser.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    if not args.file.is_file():
        print(f"no keys file at {args.file}", file=sys.stderr)
        return 1
    try:
        keys = load_keys_file(args.file)
    except KeysFileError as error:
        print(str(error), file=sys.stderr)
        return 1
    print(f"{len(keys)} keys")
    return 0


if __name__ == "__main__":
    sys.exit(main())
