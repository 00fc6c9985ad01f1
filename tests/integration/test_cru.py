"""The compute-resource-usage reader (python-lib/process_tracker/cru.py) over real audit files and real processes:
rotation mid-read, truncation, a reused pid, a completed item, malformed and huge lines, several instances."""
import json
import os
import subprocess
import sys

import psutil
import pytest

from dev.cru_writer import AuditLog, audit_line, cru_message
from process_tracker.cru import AuditReader, parse_event
from process_tracker.host import ProcessRecord

JOB = {"type": "JOB_ACTIVITY", "projectKey": "SALES", "authIdentifier": "alice", "jobId": "Build_x_2026-01-01",
       "activityId": "compute_x_NP"}


@pytest.fixture
def sleepers():
    """Factory of real sleeping processes, killed at teardown."""
    started = []

    def make():
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        started.append(p)
        return record(p.pid)

    yield make
    for p in started:
        p.kill()
        p.wait()


def record(pid, role="python_recipe"):
    return ProcessRecord(pid=pid, ppid=1, created_at=psutil.Process(pid).create_time(), name="python", role=role,
                         label=role, user="root", instance=None, rss_bytes=None, rss_anon_bytes=None)


def start(proc, item_id="cru-1", context=JOB, shift=0.0):
    return cru_message("start", item_id, proc.pid, proc.created_at + shift, context)


def joined(reader, *procs):
    reader.poll(live={p.pid for p in procs})
    return reader.match(procs)


def test_a_start_event_gives_the_process_its_context(tmp_path, sleepers):
    proc = sleepers()
    AuditLog(str(tmp_path)).write(start(proc, shift=0.8))  # DSS notes the start a little after the fork
    ctx = joined(AuditReader([str(tmp_path)]), proc)[proc.pid]
    assert (ctx.source, ctx.kind, ctx.project_key, ctx.user) == ("cru", "JOB_ACTIVITY", "SALES", "alice")
    assert ctx.ids == {"job_id": "Build_x_2026-01-01", "activity_id": "compute_x_NP"}
    assert ctx.instance == str(tmp_path)


def test_a_reused_pid_and_a_completed_item_do_not_join(tmp_path, sleepers):
    reused, done, alive = sleepers(), sleepers(), sleepers()
    log = AuditLog(str(tmp_path))
    # an item of an older process that had reused's pid an hour before it started
    log.write(start(reused, "old", shift=-3600), start(done, "d"), start(alive, "a"))
    log.write(cru_message("complete", "d", done.pid, done.created_at, JOB, end_time=done.created_at + 5))
    log.write(cru_message("complete", "not-kept", alive.pid, 5.0, JOB, end_time=9.0))  # another item's end
    reader = AuditReader([str(tmp_path)])
    assert set(joined(reader, reused, done, alive)) == {alive.pid}
    assert reused.pid not in reader.items  # the stale item is dropped...
    log.write(cru_message("update", "new", reused.pid, reused.created_at, JOB))
    assert set(joined(reader, reused, done, alive)) == {alive.pid, reused.pid}  # ...and the new one learnt


def test_the_message_is_accepted_at_the_top_level_or_nested(tmp_path, sleepers):
    a, b, c, d = sleepers(), sleepers(), sleepers(), sleepers()
    log = AuditLog(str(tmp_path))
    log.write(start(a, "a"), envelope="top")
    log.write(start(b, "b"), envelope="nested")
    log.write_raw(json.dumps({"ts": 1, "event": {"data": [{"payload": start(c, "c")}]}}).encode() + b"\n")
    reversed_order = start(d, "d")
    reversed_order = {"computeResourceUsage": reversed_order["computeResourceUsage"],
                      "msgType": reversed_order["msgType"]}  # the pid before msgType on the line
    log.write_raw(json.dumps({"message": reversed_order}).encode() + b"\n")
    assert set(joined(AuditReader([str(tmp_path)]), a, b, c, d)) == {a.pid, b.pid, c.pid, d.pid}


def test_malformed_and_huge_lines_are_counted_and_skipped(tmp_path, sleepers):
    a, b = sleepers(), sleepers()
    log = AuditLog(str(tmp_path))
    # lines naming a live pid whose item is not known yet are parsed: these do not parse, and are counted
    log.write_raw(b'{"msgType":"compute-resource-usage-start","LOCAL_PROCESS","pid":%d broken json\n' % a.pid)
    log.write_raw(b'{"topic":"other","msg":"login"}\n\n')
    log.write_raw(audit_line({"msgType": "compute-resource-usage-start", "computeResourceUsage": {
        "type": "LOCAL_PROCESS", "id": "x", "startTime": "yesterday", "localProcess": {"pid": a.pid}}}))
    huge = start(a, "huge")
    huge["computeResourceUsage"]["context"]["padding"] = "x" * 300_000
    log.write(huge, start(b, "b"))
    reader = AuditReader([str(tmp_path)], max_line_bytes=100_000)
    assert set(joined(reader, a, b)) == {b.pid}
    assert (reader.stats.malformed, reader.stats.oversized) == (2, 1)


def test_a_huge_line_split_across_polls_is_skipped_whole(tmp_path, sleepers):
    a, b = sleepers(), sleepers()
    log = AuditLog(str(tmp_path))
    reader = AuditReader([str(tmp_path)], max_line_bytes=1000)
    huge = audit_line(start(a, "huge"))[:-1] + b" " * 5000 + b"\n"
    log.write_raw(huge[:3000])
    assert joined(reader, a, b) == {}
    log.write_raw(huge[3000:] + audit_line(start(b, "b")))
    assert set(joined(reader, a, b)) == {b.pid} and reader.stats.oversized == 1


def test_rotation_mid_read_and_a_partial_line(tmp_path, sleepers):
    a, b, c = sleepers(), sleepers(), sleepers()
    log = AuditLog(str(tmp_path))
    reader = AuditReader([str(tmp_path)])
    line_b = audit_line(start(b, "b"))
    log.write(start(a, "a"))
    log.write_raw(line_b[:40])  # DSS is writing b's line
    assert set(joined(reader, a, b, c)) == {a.pid}
    log.write_raw(line_b[40:])  # ...finished in the same file, which is then rotated
    log.rotate()
    log.write(start(c, "c"))
    assert set(joined(reader, a, b, c)) == {a.pid, b.pid, c.pid}
    assert os.path.exists(log.path + ".1")


def test_truncation_and_a_replaced_file_are_read_again_from_the_start(tmp_path, sleepers):
    a, b, c = sleepers(), sleepers(), sleepers()
    log = AuditLog(str(tmp_path))
    reader = AuditReader([str(tmp_path)])
    log.write(start(a, "a"), start(a, "a2"), start(a, "a3"))
    assert set(joined(reader, a)) == {a.pid}
    log.truncate()
    log.write(start(b, "b"))  # shorter than what was read: truncated
    assert set(joined(reader, a, b)) == {a.pid, b.pid}
    os.remove(log.path)
    log.write(start(c, "c"), start(c, "c2"), start(c, "c3"), start(c, "c4"))  # a new file under the same name
    assert set(joined(reader, a, b, c)) == {a.pid, b.pid, c.pid}
    assert reader.stats.rotations >= 1


def test_events_of_several_instances(tmp_path, sleepers):
    a, b = sleepers(), sleepers()
    one, two = str(tmp_path / "dss1"), str(tmp_path / "dss2")
    AuditLog(one).write(start(a, "a"))
    AuditLog(two).write(start(b, "b", context=dict(JOB, projectKey="FRAUD")))
    got = joined(AuditReader([one, two]), a, b)
    assert (got[a.pid].instance, got[a.pid].project_key) == (one, "SALES")
    assert (got[b.pid].instance, got[b.pid].project_key) == (two, "FRAUD")


def test_only_live_pids_are_kept_and_the_first_poll_reads_the_tail_only(tmp_path, sleepers):
    a = sleepers()
    log = AuditLog(str(tmp_path))
    dead = cru_message("start", "gone", 2 ** 22 + 7, 1.0, JOB)  # no such pid
    log.write(start(a, "early"), *([dead] * 2000))
    size = os.path.getsize(log.path)
    reader = AuditReader([str(tmp_path)], backfill_bytes=size // 2)
    assert joined(reader, a) == {}  # a's start is in the older half, not read back
    assert reader.items == {} and reader.stats.parsed == 0  # the dead pids' events were not even parsed
    log.write(cru_message("update", "early", a.pid, a.created_at, JOB))  # DSS's next update repeats it
    assert set(joined(reader, a)) == {a.pid}
    reader.poll(live=set())  # the process is gone: forgotten
    assert reader.items == {}


def test_unreadable_or_untrusted_audit_folders_are_notes(tmp_path):
    missing = str(tmp_path / "nowhere")
    not_a_dir = tmp_path / "file_home"
    os.makedirs(str(not_a_dir / "run"))
    (not_a_dir / "run" / "audit").write_text("not a folder")
    open_home = tmp_path / "open_home"
    AuditLog(str(open_home))
    os.chmod(str(open_home / "run" / "audit"), 0o777)
    reader = AuditReader([missing, str(not_a_dir), str(open_home)])
    reader.poll(live=set())
    assert set(reader.notes) == {missing, str(not_a_dir), str(open_home)}
    assert "no audit log folder" in reader.notes[missing]
    assert "unreadable" in reader.notes[str(not_a_dir)]
    assert "writable by others" in reader.notes[str(open_home)]
    owned = tmp_path / "owned"
    AuditLog(str(owned))
    reader.poll(live=set(), dip_homes={str(owned): "nobody"})  # a backend of user nobody: its folder is root's
    assert "not owned by nobody" in reader.notes[str(owned)]


def test_context_values_are_validated():
    line = audit_line(cru_message("start", "i", 4242, 1.0, {
        "type": "JOB_ACTIVITY\x1b[2K", "projectKey": "../PROD", "authIdentifier": "alice\nroot",
        "jobId": "Build/../x", "webappId": "ok_1", "analysisId": "a\x00b"}))
    _phase, item = parse_event(line)
    ctx = item.context
    assert (ctx.kind, ctx.project_key, ctx.user) == (None, None, None)
    assert ctx.ids == {"webapp_id": "ok_1"}
    assert parse_event(b"[1, 2]") == ("other", None) and parse_event(b"{") is None


# ---- with the demo fleet, the real scanner and the simulator ----------------------------------------------------
def test_fleet_processes_get_their_dss_context_and_join_through_cru(fleet, simulator, demo_instance):
    from dev.cru_writer import DEMO_CONTEXTS, write_fleet_events
    from process_tracker import activities, context, joins
    from process_tracker.host import Scanner

    write_fleet_events(fleet)
    snapshot = Scanner().scan()
    contexts = context.read_contexts(snapshot, AuditReader())
    for name in DEMO_CONTEXTS:
        assert contexts[fleet.pid(name)].source == "cru", name
    ml = contexts[fleet.pid("ml-1")]
    assert (ml.kind, ml.project_key, ml.user, ml.ids["analysis_id"]) == ("ANALYSIS_ML_TRAIN", "CHURN", "alice", "aN7cQ2")
    assert fleet.pid("jupyter") not in contexts and fleet.pid("kernel-orphan") not in contexts

    sim = simulator(demo_instance, fleet_pids=fleet.pids)
    inventory = activities.list_activities(sim.client())
    rows = {m.process.pid: m for m in joins.join(snapshot, inventory, instance=fleet.dip_home, contexts=contexts).rows}
    recipe = rows[fleet.pid("recipe-1")]
    assert (recipe.activity.kind, recipe.via, recipe.source) == ("job", "cru", "cru")
    assert recipe.activity.id == DEMO_CONTEXTS["recipe-1"]["jobId"]
    assert (rows[fleet.pid("jek-1")].source, rows[fleet.pid("webapp-1")].source) == ("api", "api")  # the API first
    ml_row = rows[fleet.pid("ml-1")]
    assert (ml_row.activity, ml_row.status, ml_row.source, ml_row.context.kind) == (
        None, "explained", "cru", "ANALYSIS_ML_TRAIN")
    assert rows[fleet.pid("kernel-orphan")].status == "orphan"  # no source explains it


def test_scan_json_carries_the_context_without_any_dss_connection(fleet):
    from dev.cru_writer import write_fleet_events

    write_fleet_events(fleet, names=["recipe-1", "ml-1"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("DKU_")}
    cli = os.path.join(os.path.dirname(sys.executable), "process-tracker")
    doc = json.loads(subprocess.run([cli, "scan", "--json"], capture_output=True, text=True, check=True, env=env,
                                    timeout=300).stdout)
    by_pid = {p["pid"]: p for p in doc["processes"]}
    recipe = by_pid[fleet.pid("recipe-1")]["context"]
    assert (recipe["source"], recipe["kind"], recipe["project_key"], recipe["user"]) == (
        "cru", "JOB_ACTIVITY", "CHURN", "alice")
    assert recipe["ids"]["job_id"].startswith("Build_churn_scored")
    assert by_pid[fleet.pid("ml-1")]["context"]["kind"] == "ANALYSIS_ML_TRAIN"
    assert by_pid[fleet.pid("backend")]["context"] is None


def test_a_poll_reads_at_most_its_budget_and_the_next_one_goes_on(tmp_path, sleepers):
    procs = [sleepers() for _ in range(3)]
    log = AuditLog(str(tmp_path))
    reader = AuditReader([str(tmp_path)], max_bytes_per_poll=700)
    reader.poll(live=set())  # primed on an empty folder: the file below is new, read from its start
    log.write(*[start(p, "i%d" % n) for n, p in enumerate(procs)])
    seen = []
    for _ in range(10):
        seen.append(len(joined(reader, *procs)))
    assert seen[0] < 3 and seen[-1] == 3 and reader.stats.bytes_read == os.path.getsize(log.path)


def test_symbolic_links_in_the_audit_folder_are_not_followed(tmp_path, sleepers):
    a = sleepers()
    elsewhere = tmp_path / "elsewhere.log"
    elsewhere.write_bytes(audit_line(start(a, "a")))
    log = AuditLog(str(tmp_path / "home"))
    os.symlink(str(elsewhere), os.path.join(log.folder, "audit.log.3"))
    assert joined(AuditReader([str(tmp_path / "home")]), a) == {}


@pytest.mark.parametrize("seed", range(6))
def test_any_split_of_the_writes_and_rotations_gives_the_same_items(tmp_path, sleepers, seed):
    """The same events written in random pieces (cut anywhere, even mid-line), with rotations between pieces and
    polls at random moments, leave the reader with the items a single read gives."""
    import random

    rng = random.Random(seed)
    procs = [sleepers() for _ in range(4)]
    lives = []  # per process: start, updates, and for some a complete; interleaved, each in its own order
    for n, p in enumerate(procs):
        item_id, ctx = "i%d" % n, dict(JOB, activityId="a%d" % n)
        life = [cru_message("start", item_id, p.pid, p.created_at, ctx)]
        life += [cru_message("update", item_id, p.pid, p.created_at, ctx) for _ in range(rng.randrange(12))]
        if n % 2:
            life.append(cru_message("complete", item_id, p.pid, p.created_at, ctx, end_time=p.created_at + 9))
        lives.append(life)
    events = []
    while any(lives):
        life = rng.choice([life for life in lives if life])
        events.append(life.pop(0))
    data = b"".join(audit_line(e) for e in events)
    once = AuditLog(str(tmp_path / "once"))
    once.write_raw(data)
    expected = AuditReader([str(tmp_path / "once")])
    expected.poll(live={p.pid for p in procs})
    pieces = AuditLog(str(tmp_path / "pieces"))
    reader = AuditReader([str(tmp_path / "pieces")])
    reader.poll(live={p.pid for p in procs})
    pos = 0
    while pos < len(data):
        cut = min(len(data), pos + rng.randrange(1, 400))
        pieces.write_raw(data[pos:cut])
        pos = cut
        if data[pos - 1:pos] == b"\n" and rng.random() < 0.2:
            pieces.rotate()  # loggers rotate between lines
        if rng.random() < 0.5:
            reader.poll(live={p.pid for p in procs})
    reader.poll(live={p.pid for p in procs})
    def summary(r):
        return {pid: (i.item_id, i.context.ids) for pid, i in r.items.items()}

    assert summary(reader) == summary(expected) and len(expected.items) == 2  # the two not completed
