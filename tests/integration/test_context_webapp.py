"""DSS's own records in the webapp's sampler, history and table (issue 15): real CRU events in the fleet's audit
log read by the sampler's long-lived reader, stored with the sample and joined into /api/table's rows; the OOM-kill
counters of DSS cgroups read from real cgroup files into a bounded history series and its chart."""
import os

from dev.cru_writer import AuditLog, DEMO_CONTEXTS, cru_message, write_fleet_events
from process_tracker import cgroup_context, charts
from process_tracker.activities import Inventory
from process_tracker.history import MAX_OOM_CGROUPS, HistoryStore
from process_tracker.host import CgroupRecord, ScanStats, Scanner, Snapshot
from process_tracker.sampler import Sampler
from process_tracker.webapp_table import join_table


def test_the_sampler_stores_what_the_audit_log_says_and_the_table_shows_it(fleet, tmp_path):
    write_fleet_events(fleet, names=["recipe-1", "ml-1"])
    store = HistoryStore(str(tmp_path / "h"))
    sampler = Sampler(store, lambda: Scanner(pss=False), interval_seconds=10, dip_home=fleet.dip_home)
    assert sampler.sample_once()
    reader = sampler._cru
    latest = store.latest()
    ml = latest.contexts[fleet.pid("ml-1")]
    assert (ml.source, ml.kind, ml.project_key, ml.user) == ("cru", "ANALYSIS_ML_TRAIN", "CHURN", "alice")
    assert ml.ids["analysis_id"] == DEMO_CONTEXTS["ml-1"]["analysisId"]

    # no DSS listing at all: the table still says what DSS's records say of the ML training and the recipe
    rows, _, _ = join_table(latest.processes, Inventory(taken_at=0.0, activities=(), errors=()), 0.0,
                            instance=fleet.dip_home, contexts=latest.contexts)
    by_pid = {r["pid"]: r for r in rows}
    row = by_pid[fleet.pid("ml-1")]
    assert (row["status"], row["source"], row["context_kind"], row["project_key"], row["owner"]) == (
        "explained", "cru", "ANALYSIS_ML_TRAIN", "CHURN", "alice")
    assert by_pid[fleet.pid("recipe-1")]["project_key"] == "CHURN"
    assert by_pid[fleet.pid("backend")]["source"] is None

    # the same reader next time: it goes on from where it stopped (a completed item is dropped)
    AuditLog(fleet.dip_home).write(cru_message("complete", "cru-ml-1-%d" % fleet.pid("ml-1"), fleet.pid("ml-1"),
                                               fleet.create_time("ml-1"), DEMO_CONTEXTS["ml-1"], end_time=1.0))
    assert sampler.sample_once() and sampler._cru is reader
    assert fleet.pid("ml-1") not in store.latest().contexts
    assert store.latest().contexts[fleet.pid("recipe-1")].source == "cru"


SETTINGS = '{"cgroupSettings": {"cgroupsVersion": "CGROUPS_V1", "mlKernels": {"targets": [' \
           '{"cgroupPathTemplate": "memory/DSS/${user}/mlKernels"}]}}}'


def _cgroup_files(root, path, kills):
    base = os.path.join(root, "memory", path.lstrip("/"))
    os.makedirs(base, exist_ok=True)
    with open(os.path.join(base, "memory.oom_control"), "w") as f:
        f.write("oom_kill_disable 0\nunder_oom 0\noom_kill %d\n" % kills)


def test_oom_kills_per_dss_cgroup_are_a_bounded_history_series_with_their_owner(tmp_path):
    home, root = str(tmp_path / "dss"), str(tmp_path / "cgroup")
    os.makedirs(os.path.join(home, "config"))
    with open(os.path.join(home, "config", "general-settings.json"), "w") as f:
        f.write(SETTINGS)
    maps = [cgroup_context.load_map(home)]
    paths = ["/DSS/alice/mlKernels"] + ["/DSS/u%03d/mlKernels" % i for i in range(MAX_OOM_CGROUPS + 10)]
    store = HistoryStore(str(tmp_path / "h"), clock=lambda: 10_000.0)
    stats = ScanStats(wall_seconds=0.0, cpu_seconds=0.0, seen=0, new=0, classified=0, access_denied=0, vanished=0)
    for ts, kills in ((9_000.0, 0), (9_500.0, 2), (9_900.0, 3)):
        for path in paths:
            _cgroup_files(root, path, kills if path == paths[0] else 0)
        snap = Snapshot(taken_at=ts, hostname="h", processes=(), roles={}, stats=stats,
                        cgroups=tuple(CgroupRecord(p, 1 << 20, 2 << 20, 1) for p in paths))
        store.record(snap, oom=cgroup_context.cgroup_infos(snap, maps, root))
    series = store.oom_series("1h")
    assert len(series.oom_kills) == MAX_OOM_CGROUPS  # bounded, the cgroup with kills kept first
    assert [v for v in series.oom_kills[paths[0]] if v is not None] == [0, 2, 3]
    assert series.labels[paths[0]] == {"workload": "mlKernels", "user": "alice", "project_key": None,
                                       "instance": home}
    assert store.oom_series("24h").oom_kills[paths[0]][-1] == 3
    fig = charts.history_body("1h", store.role_series("1h"), oom=series)["figures"]["oom_kills"]
    names = [t["name"] for t in fig["data"]]
    assert "/DSS/alice/mlKernels \u00b7 mlKernels (alice)" in names


def test_an_audit_folder_others_could_write_is_a_note_under_the_page_not_an_error(tmp_path):
    import pwd

    import psutil

    from process_tracker.host import ProcessRecord

    home = str(tmp_path / "dss")
    folder = os.path.join(home, "run", "audit")
    os.makedirs(folder)
    os.chmod(folder, 0o777)
    me = psutil.Process()
    backend = ProcessRecord(pid=me.pid, ppid=1, created_at=me.create_time(), name="java", role="backend",
                            label="backend", user=pwd.getpwuid(os.getuid()).pw_name, instance=home, rss_bytes=1,
                            rss_anon_bytes=1)
    stats = ScanStats(wall_seconds=0.0, cpu_seconds=0.0, seen=1, new=0, classified=1, access_denied=0, vanished=0)

    class OneBackend:
        def scan(self):
            return Snapshot(taken_at=1000.0, hostname="h", processes=(backend,), roles={}, cgroups=(), stats=stats)

    store = HistoryStore(str(tmp_path / "h"))
    sampler = Sampler(store, OneBackend, interval_seconds=10, dip_home=home)
    assert sampler.sample_once() and sampler.context_errors == 0
    notes = store.latest().sampler["dss_records_notes"]
    assert len(notes) == 1 and "writable by others" in notes[0] and folder in notes[0], notes
