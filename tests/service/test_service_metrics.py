"""The cache metrics: each live process counts in a shard mapped into memory (metrics_shards),
ended processes' totals are in metrics.json; correct counters with several writers, at once,
bounded size."""

import json
import multiprocessing
import subprocess
import sys

from iris_service.metrics import CacheMetrics
from service_helpers import analyze_body, sample_source


def _hammer(path: str, rounds: int) -> None:
    metrics = CacheMetrics(path)
    for _ in range(rounds):
        metrics.record_hit(0.5)
        metrics.record_model_call(10, 2, 5, 0.25)


def test_counters_add_up_and_hit_rate_is_derived(tmp_path):
    metrics = CacheMetrics(tmp_path / "metrics.json")
    metrics.record_hit(0.01)
    metrics.record_hit(0.01)
    metrics.record_model_call(100, 20, 50, 0.003)
    metrics.record_model_error()
    data = metrics.read()
    assert data["hits"] == 2 and data["misses"] == 2
    assert data["model_calls"] == 1 and data["model_errors"] == 1
    assert data["hit_rate"] == 0.5
    assert (data["input_tokens"], data["cached_tokens"], data["output_tokens"]) == (100, 20, 50)
    assert data["cost_saved_usd"] == 0.02 and data["cost_spent_usd"] == 0.003


def test_several_processes_lose_no_update(tmp_path):
    path = str(tmp_path / "metrics.json")
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_hammer, args=(path, 50)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    data = CacheMetrics(path).read()
    assert data["hits"] == 200 and data["misses"] == 200 and data["model_calls"] == 200
    assert data["input_tokens"] == 2000
    assert abs(data["cost_saved_usd"] - 100.0) < 1e-6


def test_counts_are_in_the_file_as_soon_as_add_returns(tmp_path):
    path = tmp_path / "metrics.json"
    metrics = CacheMetrics(path)
    for count in range(1, 4):
        metrics.record_hit(0.1)
        assert CacheMetrics(path).read()["hits"] == count  # another process's view


def test_file_size_does_not_grow_with_traffic(tmp_path):
    metrics = CacheMetrics(tmp_path / "metrics.json")
    metrics.record_hit(0.1)
    size_after_one = (tmp_path / "metrics.json").stat().st_size
    for _ in range(300):
        metrics.record_hit(0.1)
    assert (tmp_path / "metrics.json").stat().st_size <= size_after_one + 20


def test_corrupt_metrics_file_restarts_counting(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"hits": 3, "misses": ')
    metrics = CacheMetrics(path)
    metrics.record_hit(0.0)
    assert CacheMetrics(path).read()["hits"] == 1
    metrics.retire()  # as at exit: the shard's counts move into the file
    assert json.loads(path.read_text())["hits"] == 1


def test_requests_update_the_metrics_file(client, settings):
    body = analyze_body(sample_source())
    for _ in range(3):
        client.post("/api/iris/analyze", json=body)
    data = CacheMetrics(settings.metrics_file).read()
    assert data["hits"] == 2 and data["misses"] == 1 and data["model_calls"] == 1
    assert data["cost_saved_usd"] == round(2 * data["cost_spent_usd"], 8)
    assert data["hit_rate"] == round(2 / 3, 4)


def test_cached_tokens_from_usage_are_counted_and_priced(client, settings):
    source = sample_source() + "# IRIS-STANDIN: cached=100\n"
    body = client.post("/api/iris/analyze", json=analyze_body(source)).get_json()
    data = CacheMetrics(settings.metrics_file).read()
    assert data["cached_tokens"] == 100
    meta = body["metadata"]
    expected = (
        (meta["input_tokens"] - 100) * 0.05 + 100 * 0.005 + meta["output_tokens"] * 0.40
    ) / 1e6
    assert abs(meta["estimated_cost_usd"] - expected) < 1e-9


def _hits_and_misses_together(path: str, rounds: int) -> None:
    metrics = CacheMetrics(path)
    for _ in range(rounds):
        metrics.add(hits=1, misses=1)  # one update: a reader must never see them differ


def test_readers_never_see_half_an_update(tmp_path):
    path = tmp_path / "metrics.json"
    context = multiprocessing.get_context("fork")
    writers = [
        context.Process(target=_hits_and_misses_together, args=(str(path), 100_000))
        for _ in range(3)
    ]
    for writer in writers:
        writer.start()
    reader = CacheMetrics(path)
    seen = []
    while any(writer.is_alive() for writer in writers):
        counters = reader.read()
        seen.append((counters["hits"], counters["misses"]))
    for writer in writers:
        writer.join()
    assert all(hits == misses for hits, misses in seen), [p for p in seen if p[0] != p[1]][:5]
    assert len(seen) > 100  # read many times while the counts were being written
    assert reader.read()["hits"] == 300_000


def test_a_file_left_longer_than_the_counters_is_overwritten_cleanly(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"hits": 7}' + " " * 2000 + "junk")
    metrics = CacheMetrics(path)
    metrics.record_hit(0.0)  # unreadable: counting restarts, and no junk is left behind
    metrics.record_hit(0.0)
    metrics.retire()
    assert json.loads(path.read_text())["hits"] == 2


def test_a_removed_metrics_file_is_recreated(tmp_path):
    path = tmp_path / "metrics.json"
    metrics = CacheMetrics(path)
    metrics.record_hit(0.0)
    path.unlink()  # the writer's open descriptor now names a file nobody can read
    metrics.record_hit(0.0)
    metrics.retire()  # the live shard's counts were never in the file: they are kept
    assert json.loads(path.read_text())["hits"] == 2


def test_a_count_is_a_memory_write_seen_at_once_by_another_process(tmp_path):
    path = tmp_path / "metrics.json"
    metrics = CacheMetrics(path)
    metrics.record_hit(0.25)
    before = path.read_bytes()
    for count in range(2, 5):
        metrics.record_hit(0.25)
        assert path.read_bytes() == before  # no file update per count
        code = f"from iris_service.metrics import CacheMetrics as M; print(M({str(path)!r}).read())"
        seen = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        counters = eval(seen.stdout)  # noqa: S307 (our own dict's repr)
        assert counters["hits"] == count and counters["cost_saved_usd"] == 0.25 * count


def test_an_ended_process_leaves_its_counts_in_the_file_and_no_shard(tmp_path):
    path = tmp_path / "metrics.json"
    code = (
        "from iris_service.metrics import CacheMetrics; "
        f"m = CacheMetrics({str(path)!r}); m.record_hit(0.1); m.record_model_call(5, 0, 2, 0.2)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert list((tmp_path / "metrics.d").iterdir()) == []
    data = json.loads(path.read_text())
    assert (data["hits"], data["misses"], data["input_tokens"]) == (1, 1, 5)
    assert data["since"] and data["updated_at"]


def test_a_killed_process_counts_until_the_next_process_merges_them(tmp_path):
    path = str(tmp_path / "metrics.json")
    context = multiprocessing.get_context("fork")
    killed = context.Process(target=_hammer, args=(path, 3))  # ends with os._exit: no retire
    killed.start()
    killed.join()
    assert len(list((tmp_path / "metrics.d").iterdir())) == 1
    assert CacheMetrics(path).read()["hits"] == 3  # still counted, from its shard
    code = f"from iris_service.metrics import CacheMetrics; CacheMetrics({path!r}).record_hit(0)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)  # merges the dead one
    assert list((tmp_path / "metrics.d").iterdir()) == []
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["hits"] == 4 and data["model_calls"] == 3


def test_without_a_shard_every_count_updates_the_file(tmp_path, caplog):
    path = tmp_path / "metrics.json"
    (tmp_path / "metrics.d").write_text("not a directory")  # a shard cannot be made
    metrics = CacheMetrics(path)
    metrics.record_hit(0.1)
    metrics.record_hit(0.1)
    assert json.loads(path.read_text())["hits"] == 2
    assert any("updating" in record.getMessage() for record in caplog.records)
