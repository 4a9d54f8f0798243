"""iris-service-admin: cache stats, inspect and clear, JSON on stdout."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from iris_service import admin
from service_helpers import analyze_body, numbered, sample_source


@pytest.fixture
def admin_env(monkeypatch, settings):
    for name in list(os.environ):
        if name.startswith("IRIS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("IRIS_CACHE_DIR", str(settings.cache_dir))
    return settings


def run(capsys, *argv):
    code = admin.main(list(argv))
    return code, json.loads(capsys.readouterr().out)


def test_stats_of_an_empty_cache(admin_env, capsys):
    code, stats = run(capsys, "cache", "stats")
    assert code == 0
    assert stats["entries"] == 0 and stats["bytes"] == 0 and stats["hit_rate"] == 0.0
    assert stats["oldest_entry"] is None


def test_stats_after_analyses(admin_env, client, capsys):
    client.post("/api/iris/analyze", json=analyze_body(sample_source("a")))
    client.post("/api/iris/analyze", json=analyze_body(sample_source("b")))
    client.post("/api/iris/analyze", json=analyze_body(sample_source("a")))
    code, stats = run(capsys, "cache", "stats")
    assert code == 0
    assert stats["entries"] == 2 and stats["bytes"] > 0
    assert stats["hits"] == 1 and stats["misses"] == 2 and stats["model_calls"] == 2
    assert stats["hit_rate"] == round(1 / 3, 4)
    assert stats["cost_spent_usd"] > 0 and stats["cost_saved_usd"] > 0
    assert stats["input_tokens"] > 0 and stats["output_tokens"] > 0
    assert stats["oldest_entry"].endswith("+00:00") and stats["newest_entry"]


def test_inspect_by_file_hashes_like_the_service(admin_env, client, capsys, tmp_path):
    source = sample_source()
    served = client.post("/api/iris/analyze", json=analyze_body(numbered(source))).get_json()
    path = tmp_path / "example.py"
    path.write_text(source)
    code, found = run(capsys, "cache", "inspect", "--file", str(path))
    assert code == 0
    assert found["file_intent"] == served["file_intent"]
    assert found["responsibility_blocks"] == served["responsibility_blocks"]
    code, by_key = run(capsys, "cache", "inspect", "--key", found["key"])
    assert code == 0 and by_key["key"] == found["key"]


def test_inspect_missing_entry_exits_3(admin_env, capsys, tmp_path):
    code, out = run(capsys, "cache", "inspect", "--key", "0" * 64)
    assert code == 3 and "error" in out
    path = tmp_path / "new.ts"
    path.write_text("let a = 1;\n")
    code, out = run(capsys, "cache", "inspect", "--file", str(path))
    assert code == 3


def test_inspect_rejects_a_bad_key_or_unknown_language(admin_env, capsys, tmp_path):
    code, out = run(capsys, "cache", "inspect", "--key", "../../etc/passwd")
    assert code == 2 and "not a cache key" in out["error"]
    path = tmp_path / "notes.txt"
    path.write_text("x")
    code, out = run(capsys, "cache", "inspect", "--file", str(path))
    assert code == 2 and "--language" in out["error"]


def test_clear_all_and_older_than(admin_env, client, capsys):
    client.post("/api/iris/analyze", json=analyze_body(sample_source("a")))
    client.post("/api/iris/analyze", json=analyze_body(sample_source("b")))
    [old, _new] = sorted(admin_env.disk_cache_dir.glob("*/*.json"))
    data = json.loads(old.read_text())
    data["created_at"] = time.time() - 7200
    old.write_text(json.dumps(data))
    assert run(capsys, "cache", "clear", "--older-than", "3600") == (0, {"removed": 1})
    assert run(capsys, "cache", "clear") == (0, {"removed": 1})
    assert run(capsys, "cache", "stats")[1]["entries"] == 0


def test_console_script_runs_with_the_service_environment(settings, client):
    client.post("/api/iris/analyze", json=analyze_body(sample_source()))
    script = Path(sys.executable).with_name("iris-service-admin")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRIS_")}
    env["IRIS_CACHE_DIR"] = str(settings.cache_dir)
    done = subprocess.run(
        [str(script), "cache", "stats"], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout)["entries"] == 1
    usage = subprocess.run([str(script), "cache"], env=env, capture_output=True, text=True)
    assert usage.returncode == 2
