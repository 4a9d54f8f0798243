"""Cache backups to S3 (moto in server mode over HTTP, reached through AWS_ENDPOINT_URL):
``iris-service-admin backup | backups | restore``, the objects checked with boto3."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from iris_service import cache_backup
from iris_service.cache import CacheEntry, DiskCache
from iris_service.cache_key import key_for
from iris_service.config import Settings
from service_helpers import free_port

REGION = "us-east-2"


def make_entry(tag: str, created_at: float | None = None) -> CacheEntry:
    key = key_for(Settings(), f"def f_{tag}():\n    return {tag!r}\n", "python")
    return CacheEntry(
        key=key,
        file_intent=f"intent {tag}",
        responsibility_blocks=[{"title": tag, "ranges": [[1, 2]]}],
        created_at=time.time() if created_at is None else created_at,
        model="gpt-test",
        prompt_version="v-test",
    )


def disk(cache_dir: Path) -> DiskCache:
    return DiskCache(cache_dir / "cache", ttl_s=30 * 86400.0, max_bytes=1024**3)


def entry_files(cache_dir: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path, _ in disk(cache_dir).entry_files()}


@pytest.fixture
def s3(moto_endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"iris-backups-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


class Admin:
    """``iris-service-admin`` as a process, with only the environment given here."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def run(self, *argv: str, **env: str) -> tuple[int, dict[str, Any]]:
        done = subprocess.run(
            [sys.executable, "-m", "iris_service.admin", *argv],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            # Only against a hang: ``backup`` runs at nice 19, so on a busy machine it can wait
            # behind everything else for minutes.
            timeout=900,
        )
        assert done.stdout, done.stderr
        return done.returncode, json.loads(done.stdout)

    def ok(self, *argv: str, **env: str) -> dict[str, Any]:
        code, data = self.run(*argv, **env)
        assert code == 0, data
        return data


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IRIS_", "AWS_", "OPENAI_"))}
    env.update(
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        AWS_REGION=REGION,
    )
    return env


@pytest.fixture
def admin(tmp_path: Path, moto_endpoint: str, bucket: str) -> Admin:
    env = base_env(tmp_path)
    env.update(
        IRIS_CACHE_DIR=str(tmp_path / "iris"),
        IRIS_BACKUP_BUCKET=bucket,
        IRIS_BACKUP_PREFIX="backups/test",
        AWS_ENDPOINT_URL=moto_endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
    )
    return Admin(env)


def fill(cache_dir: Path, tags: list[str]) -> list[CacheEntry]:
    entries = [make_entry(tag) for tag in tags]
    for entry in entries:
        disk(cache_dir).put(entry)
    return entries


def test_backup_writes_one_encrypted_object_with_its_entry_count(admin, s3, bucket, tmp_path):
    fill(tmp_path / "iris", ["a", "b", "c"])
    report = admin.ok("backup")
    assert report["entries"] == 3 and report["bytes"] > 0 and report["seconds"] >= 0
    assert cache_backup.ID_RE.match(report["id"])
    assert report["key"] == f"backups/test/{report['id']}.tar.gz"
    head = s3.head_object(Bucket=bucket, Key=report["key"])
    assert head["Metadata"]["entries"] == "3"
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentLength"] == report["bytes"]


def test_backups_lists_newest_first_with_size_entries_and_age(admin, tmp_path):
    fill(tmp_path / "iris", ["a"])
    first = admin.ok("backup")
    fill(tmp_path / "iris", ["b"])
    second = admin.ok("backup")
    listed = admin.ok("backups")["backups"]
    assert [b["id"] for b in listed] == [second["id"], first["id"]]
    assert [b["entries"] for b in listed] == [2, 1]
    assert listed[0]["bytes"] == second["bytes"] and listed[0]["age_seconds"] >= 0


def test_backup_ids_sort_by_time():
    ids = [cache_backup.new_backup_id(now=t, host="h") for t in (9.5, 10.0, 100.001, 1e9)]
    assert ids == sorted(ids)
    assert all(cache_backup.ID_RE.match(i) for i in ids)


def test_restore_into_an_empty_cache_gives_identical_entries(admin, tmp_path):
    fill(tmp_path / "iris", ["a", "b", "c"])
    before = entry_files(tmp_path / "iris")
    backup = admin.ok("backup")
    empty = tmp_path / "fresh"
    report = admin.ok("restore", IRIS_CACHE_DIR=str(empty))
    assert report["id"] == backup["id"] and report["restored"] == 3
    assert entry_files(empty) == before


def test_restore_never_overwrites_an_entry_written_after_the_backup(admin, tmp_path):
    cache_dir = tmp_path / "iris"
    (old,) = fill(cache_dir, ["a"])
    fill(cache_dir, ["b"])
    admin.ok("backup")
    newer = CacheEntry(**{**old.__dict__, "file_intent": "written after the backup"})
    disk(cache_dir).put(newer)
    report = admin.ok("restore")
    assert report["kept_existing"] == 2 and report["restored"] == 0
    assert disk(cache_dir).get(old.key, touch=False).file_intent == "written after the backup"


def test_restore_from_an_older_backup_by_id(admin, tmp_path):
    fill(tmp_path / "iris", ["a"])
    first = admin.ok("backup")
    fill(tmp_path / "iris", ["b"])
    admin.ok("backup")
    report = admin.ok("restore", "--from", first["id"], IRIS_CACHE_DIR=str(tmp_path / "fresh"))
    assert report["id"] == first["id"] and report["restored"] == 1


def test_restore_skips_corrupt_and_expired_entries(admin, tmp_path):
    cache_dir = tmp_path / "iris"
    fill(cache_dir, ["good"])
    disk(cache_dir).put(make_entry("old", created_at=time.time() - 40 * 86400))
    bad = make_entry("bad")
    path = disk(cache_dir).path_for(bad.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    admin.ok("backup")
    report = admin.ok("restore", IRIS_CACHE_DIR=str(tmp_path / "fresh"))
    assert report["restored"] == 1
    assert report["skipped_expired"] == 1 and report["skipped_corrupt"] == 1
    assert list(entry_files(tmp_path / "fresh")) == [f"{make_entry('good').key}.json"]


def test_restore_applies_the_size_cap(admin, tmp_path):
    fill(tmp_path / "iris", [str(n) for n in range(10)])
    admin.ok("backup")
    one_entry = len(make_entry("0").to_json())
    report = admin.ok(
        "restore", IRIS_CACHE_DIR=str(tmp_path / "fresh"), IRIS_CACHE_MAX_BYTES=str(3 * one_entry)
    )
    assert report["restored"] == 10 and report["evicted"] >= 7
    assert len(entry_files(tmp_path / "fresh")) <= 3


def test_restore_if_empty_is_a_no_op_on_a_warm_cache_and_without_backups(admin, tmp_path):
    assert admin.ok("restore", "--if-empty")["skipped_reason"] == "no backups"
    fill(tmp_path / "iris", ["a"])
    admin.ok("backup")
    assert admin.ok("restore", "--if-empty")["skipped_reason"] == "cache not empty"
    report = admin.ok("restore", "--if-empty", IRIS_CACHE_DIR=str(tmp_path / "fresh"))
    assert report["restored"] == 1


# --- bad input: one JSON error each, a distinct exit code ---------------------------------


def test_no_bucket_configured(admin):
    code, data = admin.run("backup", IRIS_BACKUP_BUCKET="")
    assert code == cache_backup.EXIT_NOT_CONFIGURED and "IRIS_BACKUP_BUCKET" in data["error"]


def test_no_such_backup_id(admin):
    code, data = admin.run("restore", "--from", "20200101T000000.000Z-gone")
    assert code == cache_backup.EXIT_NO_SUCH_BACKUP
    assert data["error"] == "no such backup: 20200101T000000.000Z-gone"


def test_a_malformed_backup_id_is_a_usage_error(admin):
    code, data = admin.run("restore", "--from", "../../etc")
    assert code == 2 and "not a backup id" in data["error"]


def test_no_backups_at_all(admin, bucket):
    code, data = admin.run("restore")
    assert code == cache_backup.EXIT_NO_BACKUPS and bucket in data["error"]


def test_no_such_bucket(admin):
    code, data = admin.run("backups", IRIS_BACKUP_BUCKET="iris-no-such-bucket")
    assert code == cache_backup.EXIT_NO_SUCH_BUCKET and "iris-no-such-bucket" in data["error"]


@pytest.fixture
def denying_endpoint() -> Iterator[str]:
    """Answers every request as S3 does when the role lacks the permission."""

    class Deny(http.server.BaseHTTPRequestHandler):
        def _deny(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            body = (
                b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
                b"<Message>Access Denied</Message></Error>"
            )
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_HEAD = _deny

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Deny)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_access_denied(admin, denying_endpoint, tmp_path):
    fill(tmp_path / "iris", ["a"])
    for command in ("backup", "backups", "restore"):
        code, data = admin.run(command, AWS_ENDPOINT_URL=denying_endpoint)
        assert code == cache_backup.EXIT_ACCESS_DENIED, (command, data)
        assert data["error"].startswith("access denied to s3://")


def test_an_unreachable_endpoint(admin):
    started = time.monotonic()
    code, data = admin.run("backups", AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}")
    assert code == cache_backup.EXIT_UNREACHABLE and "unreachable" in data["error"]
    assert time.monotonic() - started < 30


def test_backup_with_credentials_from_instance_metadata(admin, moto_endpoint, s3, bucket, tmp_path):
    """No key in the environment: boto3's chain asks IMDSv2 (moto serves it) for the role's."""
    keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    env = {k: v for k, v in admin.env.items() if k not in keys}
    env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = moto_endpoint + "/"
    instance = Admin(env)
    fill(tmp_path / "iris", ["a"])
    report = instance.ok("backup")
    assert s3.head_object(Bucket=bucket, Key=report["key"])["Metadata"]["entries"] == "1"
    # ... and without that endpoint there are no credentials at all: a clear error, exit 6
    no_imds = {**env, "AWS_EC2_METADATA_DISABLED": "true"}
    code, data = Admin(no_imds).run("backups")
    assert code == cache_backup.EXIT_ACCESS_DENIED and "no AWS credentials" in data["error"]
