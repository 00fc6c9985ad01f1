"""The SQLite history: series, retention, downsampling, the last sample, schema version, concurrency."""
import json
import sqlite3
import threading

import pytest

from process_tracker.errors import ConfigError
from process_tracker.history import (
    BUCKET_SECONDS,
    RAW_RETENTION_SECONDS,
    HistoryStore,
    default_history_dir,
    role_samples,
    safe_ids,
)
from sample_records import ML_SECRET, MiB, snapshot

T0 = 1_750_000_000.0 - (1_750_000_000.0 % 3600)


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def test_record_then_latest_round_trips_the_last_sample_without_secrets(tmp_path):
    clock = Clock(T0)
    store = HistoryStore(str(tmp_path), clock=clock)
    store.record(snapshot(T0), sampler={"interval_seconds": 10, "cpu_percent_of_core": 0.4}, on_host=True)
    latest = store.latest()
    assert latest.taken_at == T0 and latest.hostname == "dss-host" and latest.on_host
    assert latest.sampler["interval_seconds"] == 10
    assert latest.stats["seen"] == 11
    by_pid = {p.pid: p for p in latest.processes}
    assert by_pid[110].ids["kernel_id"] == "11111111-1111-4111-8111-111111111111"
    assert by_pid[120].ids == {"port": 41000}  # the ML server secret is not stored
    assert latest.cgroups[0].limit_bytes == 2048 * MiB
    with open(store.path, "rb") as f:
        assert ML_SECRET.encode() not in f.read()


def test_latest_is_none_before_any_sample_and_replaced_by_each_sample(tmp_path):
    store = HistoryStore(str(tmp_path), clock=Clock(T0))
    assert store.latest() is None
    store.record(snapshot(T0))
    store.record(snapshot(T0 + 10, processes=snapshot(0).processes[:3]))
    assert len(store.latest().processes) == 3


def test_role_series_averages_per_step_and_counts_absent_roles_as_zero(tmp_path):
    clock = Clock(T0 + 3600)
    store = HistoryStore(str(tmp_path), clock=clock)
    # two samples in one 5-minute bucket: the kernel role is present in only one of them
    store.record_series([
        (T0, role_samples({"jek": (2, 100, 200, 1.0), "jupyter_kernel": (4, 400, 500, 2.0)}), []),
        (T0 + 10, role_samples({"jek": (4, 300, 400, 3.0)}), []),
    ])
    series = store.role_series("24h")
    assert series.step_seconds == BUCKET_SECONDS and series.points == 1
    assert series.roles["jek"]["count"] == (3.0,)
    assert series.roles["jek"]["rss_anon_bytes"] == (200.0,)
    assert series.roles["jupyter_kernel"]["count"] == (2.0,)
    raw = store.role_series("1h")
    assert raw.points == 2 and raw.roles["jupyter_kernel"]["count"] == (4.0, 0.0)


def test_retention_and_downsampling_bound_a_7_day_window(tmp_path):
    clock = Clock(T0)
    store = HistoryStore(str(tmp_path), retention_days=7, clock=clock)
    # 9 days at 60 s samples, written as the sampler would, with the clock moving along
    day = 86400
    batch = []
    for i in range(9 * day // 60):
        ts = T0 + i * 60
        batch.append((ts, role_samples({"jek": (3, 3 * MiB, 4 * MiB, 1.0), "backend": (1, 2048 * MiB, 2100 * MiB, 5.0)}),
                      [("/DSS/notebooks/alice", 100 * MiB, 2048 * MiB)]))
        if len(batch) == 1440:
            clock.now = ts
            store.record_series(batch)
            batch = []
    clock.now = T0 + 9 * day
    store.prune()
    conn = sqlite3.connect(store.path)
    oldest_raw = conn.execute("SELECT MIN(ts) FROM role_raw").fetchone()[0]
    oldest_bucket = conn.execute("SELECT MIN(bucket) FROM role_bucket").fetchone()[0]
    assert oldest_raw >= clock.now - RAW_RETENTION_SECONDS
    assert oldest_bucket >= clock.now - 7 * day - BUCKET_SECONDS
    week = store.role_series("7d")
    assert week.step_seconds == 1800 and 330 <= week.points <= 337
    assert set(week.roles["jek"]["count"]) == {3.0}
    day_series = store.role_series("24h")
    assert 285 <= day_series.points <= 289
    hour = store.role_series("1h")
    assert 59 <= hour.points <= 61
    cg = store.cgroup_series("7d")
    assert cg.limit_bytes["/DSS/notebooks/alice"] == 2048 * MiB
    assert set(cg.usage_bytes["/DSS/notebooks/alice"]) == {100.0 * MiB}


def test_top_processes_are_kept_per_role_with_labels_only(tmp_path):
    store = HistoryStore(str(tmp_path), clock=Clock(T0), top_n=1)
    store.record(snapshot(T0))
    rows = store.top_processes(T0 - 1)
    kernels = [r for r in rows if r[1] == "jupyter_kernel"]
    assert kernels == [(T0, "jupyter_kernel", 110, "kernel python3", "dataiku", 1200 * MiB, 1250 * MiB)]


def test_bad_window_names_the_parameter(tmp_path):
    store = HistoryStore(str(tmp_path), clock=Clock(T0))
    with pytest.raises(ConfigError) as info:
        store.role_series("2y")
    assert info.value.param == "window"


def test_schema_is_versioned_and_a_foreign_version_is_refused(tmp_path):
    store = HistoryStore(str(tmp_path), clock=Clock(T0))
    assert store.schema_version() == 1 and store.journal_mode == "wal"
    conn = sqlite3.connect(store.path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(ConfigError) as info:
        HistoryStore(str(tmp_path), clock=Clock(T0))
    assert info.value.param == "historyDir" and "99" in str(info.value)


def test_readers_do_not_block_the_writer_and_threads_share_the_store(tmp_path):
    clock = Clock(T0)
    store = HistoryStore(str(tmp_path), clock=clock)
    reader = sqlite3.connect(store.path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM role_raw").fetchone()  # an open read transaction (WAL: no block)
    errors = []

    def write(offset):
        try:
            for i in range(20):
                store.record(snapshot(T0 + offset + i))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(k * 1000,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reader.execute("COMMIT")
    assert errors == []
    assert store.size()[0] > 0


def test_default_history_dir_is_under_dip_home_when_known():
    assert default_history_dir({"DIP_HOME": "/data/dss"}) == "/data/dss/tmp/process-tracker/history"
    assert "process-tracker-history" in default_history_dir({})


def test_safe_ids_drops_secret_looking_keys_and_long_values():
    kept = safe_ids({"kernel_id": "k", "secret": "x", "api_key": "y", "port": 1, "blob": "z" * 500, "obj": {}})
    assert kept == {"kernel_id": "k", "port": 1}
    assert json.dumps(kept)
