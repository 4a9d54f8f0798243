"""Cache backups in S3: one gzipped tar of the disk tier per backup, restored without ever
overwriting an entry the service wrote meanwhile.

A backup reads each entry file as it is (entries are replaced atomically, so every file is a
whole entry) and takes no lock the service waits on. A restore writes each entry to a temp file
and links it into place, which fails when the key exists: an entry written after the backup
always wins. Credentials come from boto3's standard chain (the instance profile through IMDSv2
on EC2); ``AWS_ENDPOINT_URL`` and ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` point it elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from io import BytesIO
from typing import Any

from iris_service.cache import CacheEntry, DiskCache
from iris_service.config import Settings

DEFAULT_PREFIX = "cache-backups"
SUFFIX = ".tar.gz"
# <UTC time, fixed width so ids sort by time>-<host>
ID_RE = re.compile(r"^\d{8}T\d{6}\.\d{3}Z-[A-Za-z0-9.-]{1,63}$")
MEMBER_RE = re.compile(r"^([0-9a-f]{2})/([0-9a-f]{64})\.json$")
MAX_ENTRY_BYTES = 16 * 1024**2
SPOOL_BYTES = 64 * 1024**2
COMPRESS_LEVEL = 6

# Exit codes beside admin's 0 (success), 2 (bad input) and 3 (not found).
EXIT_NO_SUCH_BACKUP = 3
EXIT_NOT_CONFIGURED = 4
EXIT_NO_BACKUPS = 5
EXIT_ACCESS_DENIED = 6
EXIT_UNREACHABLE = 7
EXIT_NO_SUCH_BUCKET = 8


class BackupError(RuntimeError):
    """A backup operation that cannot be done; carries the admin tool's exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class BackupTarget:
    bucket: str
    prefix: str
    region: str

    @classmethod
    def from_env(cls, settings: Settings, environ: Mapping[str, str] | None = None) -> BackupTarget:
        env = os.environ if environ is None else environ
        bucket = env.get("IRIS_BACKUP_BUCKET", "").strip()
        if not bucket:
            message = "no backup bucket configured (IRIS_BACKUP_BUCKET)"
            raise BackupError(message, EXIT_NOT_CONFIGURED)
        prefix = env.get("IRIS_BACKUP_PREFIX", "").strip().strip("/") or DEFAULT_PREFIX
        region = env.get("IRIS_BACKUP_REGION", "").strip() or settings.aws_region
        return cls(bucket=bucket, prefix=prefix, region=region)

    def key_for(self, backup_id: str) -> str:
        return f"{self.prefix}/{backup_id}{SUFFIX}"


def new_backup_id(now: float | None = None, host: str | None = None) -> str:
    stamp = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    name = re.sub(r"[^A-Za-z0-9.-]", "-", host or socket.gethostname())[:63] or "host"
    return f"{stamp:%Y%m%dT%H%M%S}.{stamp.microsecond // 1000:03d}Z-{name}"


@contextlib.contextmanager
def _s3_errors(target: BackupTarget, what: str) -> Iterator[None]:
    """botocore's many exception types become one BackupError with a distinct exit code."""
    from botocore import exceptions as bx

    try:
        yield
    except bx.ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            raise BackupError(f"no such bucket: {target.bucket}", EXIT_NO_SUCH_BUCKET) from None
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch") or (
            status == 403
        ):
            raise BackupError(
                f"access denied to s3://{target.bucket}/{target.prefix}/ ({what}: {code})",
                EXIT_ACCESS_DENIED,
            ) from None
        raise BackupError(f"{what} failed: {code or error}", 1) from None
    except bx.NoCredentialsError:
        raise BackupError(f"{what}: no AWS credentials found", EXIT_ACCESS_DENIED) from None
    except (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError) as error:
        raise BackupError(f"{what}: S3 unreachable ({error})", EXIT_UNREACHABLE) from None
    except bx.BotoCoreError as error:  # e.g. a response stream cut off midway
        raise BackupError(f"{what} failed: {type(error).__name__}: {error}", 1) from None


def _client(target: BackupTarget) -> Any:
    import boto3  # imported here: only backup commands pay for it
    from botocore.config import Config

    config = Config(
        connect_timeout=3, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"}
    )
    return boto3.session.Session().client("s3", region_name=target.region, config=config)


def _disk(settings: Settings) -> DiskCache:
    return DiskCache(settings.disk_cache_dir, settings.cache_ttl_s, settings.cache_max_bytes)


def _write_archive(settings: Settings, out: Any) -> int:
    """Every readable entry file into a gzipped tar; returns the number of entries."""
    disk = _disk(settings)
    entries = 0
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=COMPRESS_LEVEL) as tar:
        for path, _stat in disk.entry_files():
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
                    mtime = os.fstat(handle.fileno()).st_mtime
            except OSError:
                continue  # evicted or cleared since the listing
            info = tarfile.TarInfo(f"{path.parent.name}/{path.name}")
            info.size, info.mtime, info.mode = len(data), int(mtime), 0o640
            tar.addfile(info, BytesIO(data))
            entries += 1
    return entries


def backup(settings: Settings, target: BackupTarget, host: str | None = None) -> dict[str, Any]:
    started = time.monotonic()
    backup_id = new_backup_id(host=host)
    key = target.key_for(backup_id)
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        entries = _write_archive(settings, spool)
        size = spool.tell()
        spool.seek(0)
        with _s3_errors(target, "backup"):
            _client(target).upload_fileobj(
                spool,
                target.bucket,
                key,
                ExtraArgs={
                    "ServerSideEncryption": "AES256",
                    "ContentType": "application/gzip",
                    "Metadata": {"entries": str(entries), "host": backup_id.split("-", 1)[1]},
                },
            )
    return {
        "id": backup_id,
        "bucket": target.bucket,
        "key": key,
        "entries": entries,
        "bytes": size,
        "seconds": round(time.monotonic() - started, 3),
    }


def _backup_keys(client: Any, target: BackupTarget) -> list[dict[str, Any]]:
    objects = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=target.bucket, Prefix=f"{target.prefix}/"
    ):
        for item in page.get("Contents", []):
            backup_id = item["Key"][len(target.prefix) + 1 : -len(SUFFIX)]
            if item["Key"].endswith(SUFFIX) and ID_RE.match(backup_id):
                objects.append({"id": backup_id, **item})
    return sorted(objects, key=lambda item: item["id"], reverse=True)


def list_backups(target: BackupTarget) -> dict[str, Any]:
    """Every backup under the prefix, newest first, with size, entries and age."""
    now = time.time()
    backups = []
    with _s3_errors(target, "list backups"):
        client = _client(target)
        for item in _backup_keys(client, target):
            meta = client.head_object(Bucket=target.bucket, Key=item["Key"]).get("Metadata", {})
            modified = item["LastModified"].timestamp()
            entries = meta.get("entries", "")
            backups.append(
                {
                    "id": item["id"],
                    "key": item["Key"],
                    "bytes": item["Size"],
                    "entries": int(entries) if entries.isdigit() else None,
                    "host": meta.get("host"),
                    "created": item["LastModified"].astimezone(UTC).isoformat(timespec="seconds"),
                    "age_seconds": max(0, round(now - modified)),
                }
            )
    return {"bucket": target.bucket, "prefix": target.prefix, "backups": backups}


def cache_is_empty(settings: Settings) -> bool:
    return next(iter(_disk(settings).entry_files()), None) is None


def _place(disk: DiskCache, key: str, data: bytes, mtime: float) -> bool:
    """Write one entry atomically unless the key is present; True when it was written."""
    path = disk.path_for(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.restore.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.utime(tmp, (mtime, mtime))  # keeps its place in the LRU order of the size cap
        os.link(tmp, path)  # fails when the key exists: never replaces a newer entry
        return True
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def restore(
    settings: Settings, target: BackupTarget, backup_id: str | None = None
) -> dict[str, Any]:
    """Restore ``backup_id`` (default: the latest) into the disk tier; entries present win."""
    started = time.monotonic()
    if backup_id is not None and not ID_RE.match(backup_id):
        raise BackupError(f"not a backup id: {backup_id!r}", 2)
    disk = _disk(settings)
    counts = {"restored": 0, "kept_existing": 0, "skipped_expired": 0, "skipped_corrupt": 0}
    now = time.time()
    with _s3_errors(target, "restore"):
        client = _client(target)
        if backup_id is None:
            found = _backup_keys(client, target)
            if not found:
                raise BackupError(
                    f"no backups in s3://{target.bucket}/{target.prefix}/", EXIT_NO_BACKUPS
                )
            backup_id = str(found[0]["id"])
        try:
            body = client.get_object(Bucket=target.bucket, Key=target.key_for(backup_id))["Body"]
        except client.exceptions.NoSuchKey:
            raise BackupError(f"no such backup: {backup_id}", EXIT_NO_SUCH_BACKUP) from None
        try:
            with tarfile.open(fileobj=body, mode="r|gz") as tar:
                for member in tar:
                    counts[_restore_member(disk, tar, member, settings.cache_ttl_s, now)] += 1
        except (tarfile.TarError, EOFError, zlib.error) as error:
            raise BackupError(f"backup {backup_id} is not a readable archive: {error}", 1) from None
    evicted = disk.enforce_limits()
    return {
        "id": backup_id,
        **counts,
        "evicted": evicted,
        "seconds": round(time.monotonic() - started, 3),
    }


def _restore_member(
    disk: DiskCache, tar: tarfile.TarFile, member: tarfile.TarInfo, ttl_s: float, now: float
) -> str:
    match = MEMBER_RE.match(member.name)
    if not member.isfile() or match is None or member.size > MAX_ENTRY_BYTES:
        return "skipped_corrupt"
    shard, key = match.groups()
    handle = tar.extractfile(member)
    data = handle.read() if handle is not None else b""
    try:
        entry = CacheEntry.from_json(data)
    except (ValueError, KeyError, TypeError):
        return "skipped_corrupt"
    if entry.key != key or shard != key[:2]:
        return "skipped_corrupt"
    if entry.expired(ttl_s, now):
        return "skipped_expired"
    return "restored" if _place(disk, key, data, float(member.mtime)) else "kept_existing"


def restore_if_empty(settings: Settings, target: BackupTarget) -> dict[str, Any]:
    """Restore the latest backup into an empty cache; a no-op (reported) otherwise."""
    if not cache_is_empty(settings):
        return {"restored": 0, "skipped_reason": "cache not empty"}
    try:
        return restore(settings, target)
    except BackupError as error:
        if error.exit_code != EXIT_NO_BACKUPS:
            raise
        return {"restored": 0, "skipped_reason": "no backups"}
