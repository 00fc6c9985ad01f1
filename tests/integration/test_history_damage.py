"""History damage (issue 12.5): a truncated file, a garbage header, a read-only folder and a full disk.

Each is made for real: the file is truncated or overwritten on disk; the read-only folder and the full disk are a
real tmpfs mounted for the test (remounted read-only, or filled up), so SQLite meets the same errors it meets on a
host (those tests need the right to mount, and are skipped without it). A full database is also made portably with
SQLite's own `PRAGMA max_page_count`, which raises the SQLITE_FULL error a full disk gives.
Every case recovers without a restart: the same store object (and webapp) works again once the cause is gone."""
import glob
import os
import sqlite3
import subprocess
import time

import pytest

from process_tracker.history import HistoryStore, HistoryUnavailable
from sample_records import snapshot


def filled_store(directory, samples=3):
    store = HistoryStore(str(directory))
    now = time.time()
    for i in range(samples):
        store.record(snapshot(now - 10 * (samples - i)))
    conn = sqlite3.connect(store.path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file, as after a quiet period
    conn.close()
    return store


def moved_aside(store):
    return [p for p in glob.glob(store.path + ".damaged-*") if not p.endswith(("-wal", "-shm"))]


def truncate(store):
    size = os.path.getsize(store.path)
    os.truncate(store.path, size // 2)


def garble_header(store):
    with open(store.path, "r+b") as f:
        f.write(b"this is no sqlite header at all!")


def test_a_truncated_file_is_moved_aside_and_a_new_history_starts_without_restart(tmp_path):
    store = filled_store(tmp_path / "h")
    assert store.latest() is not None
    truncate(store)
    assert store.latest() is None  # read on the new, empty history (was: DatabaseError, until a restart)
    assert len(moved_aside(store)) == 1
    health = store.health()
    assert health["ok"] is True and "moved aside" in health["notice"]
    store.record(snapshot(time.time()))
    assert store.latest() is not None
    other = HistoryStore(store.directory)  # another backend process sees the notice too
    assert other.latest_taken_at() is not None and "moved aside" in other.health()["notice"]


def test_a_garbage_header_does_not_fail_a_restart(tmp_path):
    store = filled_store(tmp_path / "h")
    garble_header(store)
    restarted = HistoryStore(store.directory)  # was: sqlite3.DatabaseError "file is not a database"
    assert len(moved_aside(restarted)) == 1 and restarted.latest() is None
    assert "moved aside" in restarted.health()["notice"]
    restarted.record(snapshot(time.time()))
    assert restarted.latest() is not None


def test_two_processes_noticing_the_damage_move_it_aside_once(tmp_path):
    store = filled_store(tmp_path / "h")
    other = HistoryStore(store.directory)
    truncate(store)
    assert store.latest() is None
    store.record(snapshot(time.time()))
    assert other.latest() is not None  # the fresh file, not moved aside a second time
    assert len(moved_aside(store)) == 1


class PageLimitedStore(HistoryStore):
    """A store whose database may not grow past `max_pages`: SQLite raises SQLITE_FULL ("database or disk is
    full"), the error of a full disk."""

    max_pages = None

    def connect(self):
        conn = super().connect()
        if self.max_pages is not None:
            conn.execute("PRAGMA max_page_count = %d" % self.max_pages)
        return conn


def test_a_full_database_is_unavailable_with_its_reason_then_recovers(tmp_path):
    store = PageLimitedStore(str(tmp_path / "h"))
    store.record(snapshot(time.time()))
    conn = sqlite3.connect(store.path)
    store.max_pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    with pytest.raises(HistoryUnavailable, match="is full"):
        for i in range(50):
            store.record(snapshot(time.time() + i, processes=None))
    assert store.latest() is not None  # reads still work, and the failed write is still said
    assert store.health()["ok"] is False and "full" in store.health()["reason"]
    store.max_pages = None  # space again
    store.record(snapshot(time.time() + 100))
    assert store.health() == {"ok": True, "reason": None, "notice": None}


@pytest.fixture()
def tmpfs(tmp_path):
    """A real 2 MiB tmpfs at tmp_path/fs (skipped when this user may not mount)."""
    mountpoint = tmp_path / "fs"
    mountpoint.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mountpoint)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): %s" % done.stderr.decode(errors="replace").strip())
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def remount(mountpoint, mode):
    """Remount read-only or read-write; tried again for a while when the kernel still says busy (files just closed
    by other threads are released a little later)."""
    for _ in range(50):
        done = subprocess.run(["mount", "-o", "remount,%s" % mode, str(mountpoint)], capture_output=True, check=False)
        if done.returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError("cannot remount %s %s: %s" % (mountpoint, mode, done.stderr.decode(errors="replace")))


def test_a_read_only_folder_is_unavailable_with_its_reason_then_recovers(tmpfs):
    store = HistoryStore(str(tmpfs / "h"))
    store.record(snapshot(time.time()))
    remount(tmpfs, "ro")
    with pytest.raises(HistoryUnavailable, match="read-only"):
        store.record(snapshot(time.time() + 1))
    with pytest.raises(HistoryUnavailable, match="read-only"):
        store.latest()
    remount(tmpfs, "rw")
    store.record(snapshot(time.time() + 2))
    assert store.latest() is not None and store.health()["ok"] is True


def test_a_full_disk_is_unavailable_with_its_reason_then_recovers(tmpfs):
    store = HistoryStore(str(tmpfs / "h"))
    store.record(snapshot(time.time()))
    filler = tmpfs / "filler"
    with open(filler, "wb") as f:
        with pytest.raises(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()
    with pytest.raises(HistoryUnavailable, match="is full"):
        for i in range(50):
            store.record(snapshot(time.time() + i))
    os.remove(filler)
    store.record(snapshot(time.time() + 100))
    assert store.health()["ok"] is True


# ------------------------------------------------------------------------------------------------------------
# as the webapp shows it: a banner's text in each answer, 503 with the reason when the history cannot be used


@pytest.fixture()
def sim():
    from dev.dss_simulator import Simulator
    from test_webapp_backend import dss_instance

    s = Simulator(dss_instance())
    with s.serve():
        yield s


def test_the_webapp_says_the_history_was_replaced_and_goes_on(sim, tmp_path, monkeypatch):
    from test_webapp_backend import Backend, as_user

    b = Backend(sim, tmp_path, monkeypatch)
    try:
        conn = sqlite3.connect(b.state.store.path)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        truncate(b.state.store)
        snap = b.client.get("/api/snapshot", headers=as_user("admin"))
        assert snap.status_code == 200, snap.get_data(as_text=True)
        assert "moved aside" in snap.get_json()["history_state"]["notice"]
        assert b.writer.sample_once()  # the writer (another process) goes on writing: no restart
        body = b.client.get("/api/snapshot", headers=as_user("admin")).get_json()
        assert body["taken_at"] and "moved aside" in body["history_state"]["notice"]
        assert b.client.get("/api/history?window=1h", headers=as_user("admin")).status_code == 200
    finally:
        b.close()


def test_the_webapp_answers_503_with_the_reason_on_a_read_only_folder(sim, tmpfs, monkeypatch):
    from test_webapp_backend import Backend, as_user

    b = Backend(sim, tmpfs, monkeypatch)
    try:
        b.writer.stop()  # writer locks are files open for writing: a busy filesystem is not remounted
        b.state.sampler.stop()  # (the webapp's own sampler takes the lock over once the writer is gone)
        remount(tmpfs, "ro")
        for path in ("/api/snapshot", "/api/history?window=1h", "/api/table"):
            response = b.client.get(path, headers=as_user("admin"))
            assert response.status_code == 503, (path, response.get_data(as_text=True))
            error = response.get_json()["error"]
            assert error["code"] == "history_unavailable" and "read-only" in error["message"]
        remount(tmpfs, "rw")
        assert b.client.get("/api/snapshot", headers=as_user("admin")).status_code == 200
    finally:
        b.close()
