"""Cache tiers: durability, corruption, expiry, size cap, single flight."""

import fcntl
import json
import os
import threading
import time

import pytest
from iris_service.cache import AnalysisCache, CacheEntry, DiskCache, MemoryCache
from iris_service.errors import ModelTimeout
from service_helpers import analyze_body, sample_source, wait_until

KEY = "ab" + "0" * 62


def entry(key: str = KEY, created_at: float | None = None, payload: str = "") -> CacheEntry:
    return CacheEntry(
        key=key,
        file_intent="Intent " + payload,
        responsibility_blocks=[{"label": "A", "description": "", "ranges": [[1, 1]]}],
        created_at=time.time() if created_at is None else created_at,
        usage={"cost_usd": 0.001},
    )


def key_of(number: int) -> str:
    return f"{number:064x}"


@pytest.fixture
def disk(tmp_path):
    return DiskCache(tmp_path / "cache", ttl_s=3600, max_bytes=10**9)


def test_disk_entry_round_trips(disk):
    disk.put(entry())
    assert disk.get(KEY) == entry(created_at=disk.get(KEY).created_at)
    assert disk.path_for(KEY).parent.name == "ab"


def test_disk_write_leaves_no_tmp_files(disk):
    disk.put(entry())
    assert [p.name for p in disk.path_for(KEY).parent.iterdir()] == [f"{KEY}.json"]


@pytest.mark.parametrize(
    "content", [b"", b"{", b"[]", b'{"key": "x"}', b"\x00\xff garbage", b'{"file_intent": 1}']
)
def test_corrupt_or_half_written_entry_is_a_miss_and_is_removed(disk, content):
    path = disk.path_for(KEY)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    assert disk.get(KEY) is None
    assert not path.exists()


def test_entry_stored_under_another_key_is_a_miss(disk):
    disk.put(entry())
    other = "cd" + "0" * 62
    path = disk.path_for(other)
    path.parent.mkdir(parents=True)
    path.write_bytes(disk.path_for(KEY).read_bytes())
    assert disk.get(other) is None


def test_expired_entry_is_a_miss(tmp_path):
    disk = DiskCache(tmp_path / "cache", ttl_s=60, max_bytes=10**9)
    disk.put(entry(created_at=time.time() - 61))
    assert disk.get(KEY) is None
    assert not disk.path_for(KEY).exists()


def test_expired_entry_in_memory_is_a_miss():
    memory = MemoryCache(10, ttl_s=60)
    memory.put(entry(created_at=time.time() - 61))
    assert memory.get(KEY) is None


def test_memory_tier_is_bounded_lru():
    memory = MemoryCache(2, ttl_s=60)
    for number in range(3):
        memory.put(entry(key_of(number)))
    memory.get(key_of(1))
    memory.put(entry(key_of(3)))
    assert memory.get(key_of(0)) is None and memory.get(key_of(2)) is None
    assert memory.get(key_of(1)) is not None and memory.get(key_of(3)) is not None


def test_hit_marks_entry_recently_used(disk):
    disk.put(entry())
    path = disk.path_for(KEY)
    # Used an hour minus a minute ago: older than the TTL would let the put's background
    # scan evict it before the hit.
    used = time.time() - 3540
    os.utime(path, (used, used))
    disk.get(KEY)
    assert path.stat().st_mtime > used


def _ten_entries_with_key_0_most_recently_used(root) -> int:
    """Write entries 0..9 (oldest use first, then 0 used last); returns one entry's size.

    The writer has no cap of its own, so the background scans its writes start never
    evict: what the test's own cache removes is all its doing.
    """
    writer = DiskCache(root, ttl_s=10**9, max_bytes=10**9)
    for number in range(10):
        writer.put(entry(key_of(number), payload="x" * 500))
        os.utime(writer.path_for(key_of(number)), (1_700_000_000 + number,) * 2)
    os.utime(writer.path_for(key_of(0)), (1_800_000_000,) * 2)  # recently hit
    return writer.path_for(key_of(0)).stat().st_size


def test_size_cap_evicts_least_recently_used_first(tmp_path):
    size = _ten_entries_with_key_0_most_recently_used(tmp_path / "cache")
    disk = DiskCache(tmp_path / "cache", ttl_s=10**9, max_bytes=size * 5)
    # Evicting goes down to 90 % of the cap: 4.5 entries' worth, so 4 remain.
    removed = disk.enforce_limits()
    remaining = {p.stem for p, _ in disk.entry_files()}
    assert removed == 6
    assert remaining == {key_of(n) for n in (0, 7, 8, 9)}


def test_direct_eviction_waits_for_another_evictor_then_evicts(tmp_path):
    size = _ten_entries_with_key_0_most_recently_used(tmp_path / "cache")
    disk = DiskCache(tmp_path / "cache", ttl_s=10**9, max_bytes=size * 5)
    other = wait_until(lambda: _try_to_hold_eviction_lock(tmp_path / "cache"))
    assert other, "the writer's background scan kept the eviction lock"
    results = []
    call = threading.Thread(target=lambda: results.append(disk.enforce_limits()))
    call.start()
    try:
        call.join(timeout=1.0)  # a correct call is still waiting; a broken one returned 0
        assert call.is_alive() and results == [], f"returned {results} while the lock was held"
    finally:
        other.close()
    call.join(timeout=30)
    assert results == [6]
    assert {p.stem for p, _ in disk.entry_files()} == {key_of(n) for n in (0, 7, 8, 9)}


def _try_to_hold_eviction_lock(root):
    """Take the eviction lock as another worker would (None while someone else has it).

    The caller closes the returned file to release the lock.
    """
    (root / ".locks").mkdir(parents=True, exist_ok=True)
    lock = open(root / ".locks" / "evict.lock", "a")  # noqa: SIM115 - released by the caller
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    return lock


def test_direct_eviction_gives_up_loudly_when_the_lock_stays_held(tmp_path):
    size = _ten_entries_with_key_0_most_recently_used(tmp_path / "cache")
    disk = DiskCache(tmp_path / "cache", ttl_s=10**9, max_bytes=size * 5)
    other = wait_until(lambda: _try_to_hold_eviction_lock(tmp_path / "cache"))
    try:
        with pytest.raises(TimeoutError):
            disk.enforce_limits(wait_s=0.2)
    finally:
        other.close()
    assert len(list(disk.entry_files())) == 10


def test_write_over_the_cap_triggers_eviction(tmp_path):
    disk = DiskCache(tmp_path / "cache", ttl_s=10**9, max_bytes=2000)
    for number in range(20):
        disk.put(entry(key_of(number), payload="x" * 300))

    def total_bytes():
        return sum(stat.st_size for _p, stat in disk.entry_files())

    # Writes made while a background scan ran are picked up by its next round.
    assert wait_until(lambda: total_bytes() <= 2000), total_bytes()


def test_clear_older_than_keeps_recent_entries(disk):
    disk.put(entry(key_of(1), created_at=time.time() - 1000))
    disk.put(entry(key_of(2)))
    assert disk.clear(older_than_s=500) == 1
    assert [p.stem for p, _ in disk.entry_files()] == [key_of(2)]
    assert disk.clear() == 1


def test_concurrent_threads_compute_once(tmp_path):
    cache = AnalysisCache(MemoryCache(10, 3600), DiskCache(tmp_path / "c", 3600, 10**9))
    calls = []
    barrier = threading.Barrier(8)

    def compute():
        calls.append(1)
        time.sleep(0.3)  # a slow analysis, so the other threads arrive while it runs
        return entry()

    results = []

    def worker():
        barrier.wait()
        results.append(cache.get_or_compute(KEY, compute, time.monotonic() + 10))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert sorted(hit for _e, hit in results) == [False] + [True] * 7


def test_waiting_for_an_identical_analysis_respects_the_deadline(tmp_path):
    disk = DiskCache(tmp_path / "c", 3600, 10**9)
    with disk.key_lock(KEY, time.monotonic() + 5), pytest.raises(ModelTimeout):  # noqa: SIM117
        with disk.key_lock(KEY, time.monotonic() + 0.1):
            pass


def test_stale_lock_files_are_swept(disk):
    with disk.key_lock(KEY, time.monotonic() + 1):
        pass
    lock = disk.root / ".locks" / f"{KEY}.lock"
    os.utime(lock, (1_000_000, 1_000_000))
    disk.enforce_limits()
    assert not lock.exists()


def test_unwritable_cache_dir_does_not_fail_analysis(make_client, settings, tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache dir should be")
    client = make_client(settings.with_changes(cache_dir=blocked))
    response = client.post("/api/iris/analyze", json=analyze_body(sample_source()))
    assert response.status_code == 200


def test_corrupt_entry_on_disk_is_reanalyzed_not_a_crash(make_client, settings, standin):
    body = analyze_body(sample_source())
    make_client(settings).post("/api/iris/analyze", json=body)
    [path] = [p for p in (settings.disk_cache_dir).glob("*/*.json")]
    path.write_text('{"key": "truncated')
    fresh = make_client(settings)  # new process-equivalent: empty memory tier
    response = fresh.post("/api/iris/analyze", json=body)
    assert response.status_code == 200
    assert response.get_json()["metadata"]["cache_hit"] == 0
    assert standin.calls() == 2
    assert json.loads(path.read_text())["file_intent"]


def test_disk_tier_survives_a_new_app(make_client, settings, standin):
    body = analyze_body(sample_source())
    make_client(settings).post("/api/iris/analyze", json=body)
    again = make_client(settings).post("/api/iris/analyze", json=body).get_json()
    assert again["metadata"]["cache_hit"] == 1
    assert standin.calls() == 1


def test_expired_disk_entry_is_reanalyzed(make_client, settings, standin):
    body = analyze_body(sample_source())
    make_client(settings).post("/api/iris/analyze", json=body)
    [path] = list(settings.disk_cache_dir.glob("*/*.json"))
    data = json.loads(path.read_text())
    data["created_at"] -= 31 * 86400
    path.write_text(json.dumps(data))
    again = make_client(settings).post("/api/iris/analyze", json=body).get_json()
    assert again["metadata"]["cache_hit"] == 0
    assert standin.calls() == 2


def test_workers_forget_their_memory_tier_after_a_clear(tmp_path):
    cache = AnalysisCache(MemoryCache(10, 3600), DiskCache(tmp_path / "c", 3600, 10**9))
    cache.clear_check_interval_s = 0  # check on every lookup
    cache.store(entry())
    assert cache.lookup(KEY) is not None
    admin_view = DiskCache(tmp_path / "c", 3600, 10**9)  # the admin tool, another process
    assert admin_view.clear() == 1
    assert cache.lookup(KEY) is None
