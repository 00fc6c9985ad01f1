"""Hand-built host and API records for the webapp backend, history and chart tests (no psutil, no DSS)."""
from process_tracker.activities import Activity, Inventory, FailedListing
from process_tracker.host import CgroupRecord, ProcessRecord, RoleTotals, ScanStats, Snapshot

MiB = 1024 * 1024
DIP_HOME = "/data/dss"
ML_SECRET = "s3cr3t-ml-server-token-0123456789"


def proc(pid, role, label, rss_anon_mib, ppid=1, user="dataiku", instance=DIP_HOME, age=3600.0, **ids):
    return ProcessRecord(
        pid=pid,
        ppid=ppid,
        created_at=1_700_000_000.0 + pid,
        name=label.split()[0],
        role=role,
        label=label,
        user=user,
        instance=instance,
        rss_bytes=int((rss_anon_mib + 50) * MiB),
        rss_anon_bytes=int(rss_anon_mib * MiB),
        cpu_percent=1.5,
        num_threads=4,
        age_seconds=age,
        cgroup=ids.pop("cgroup", None),
        link=ids.pop("link", False),
        ids=ids,
    )


def demo_processes():
    return (
        proc(100, "supervisord", "supervisord", 20),
        proc(101, "backend", "DSS backend", 2048, ppid=100, xmx_bytes=4 * 1024 * MiB),
        proc(102, "jek", "JEK", 700, ppid=101, xmx_bytes=2 * 1024 * MiB),
        proc(103, "jek", "JEK", 650, ppid=101, xmx_bytes=2 * 1024 * MiB),
        proc(104, "fek", "FEK", 500, ppid=101, xmx_bytes=2 * 1024 * MiB),
        proc(105, "jupyter_server", "Jupyter server", 90, ppid=100),
        proc(110, "jupyter_kernel", "kernel python3", 1200, ppid=105, kernel_id="11111111-1111-4111-8111-111111111111",
             cgroup="/DSS/notebooks/alice"),
        proc(111, "jupyter_kernel", "kernel python3", 300, ppid=105, kernel_id="22222222-2222-4222-8222-222222222222"),
        proc(116, "jupyter_kernel", "kernel python3", 80, ppid=105, kernel_id="66666666-6666-4666-8666-666666666666"),
        proc(120, "ml_training", "ML server", 400, ppid=101, port=41000, secret=ML_SECRET),
        proc(200, "not_dss", "python3", 30, instance=None),
    )


def snapshot(taken_at, processes=None, cgroups=None, factor=1.0):
    processes = tuple(processes if processes is not None else demo_processes())
    if factor != 1.0:
        processes = tuple(
            ProcessRecord(**{**p.__dict__, "rss_anon_bytes": int(p.rss_anon_bytes * factor)}) for p in processes
        )
    roles = {}
    for p in processes:
        t = roles.get(p.role, RoleTotals(0, 0, 0, 0.0))
        roles[p.role] = RoleTotals(
            t.count + 1, t.rss_anon_bytes + p.rss_anon_bytes, t.rss_bytes + p.rss_bytes, t.cpu_percent + p.cpu_percent
        )
    if cgroups is None:
        cgroups = (CgroupRecord("/DSS/notebooks/alice", 1300 * MiB, 2048 * MiB, 2),)
    return Snapshot(
        taken_at=float(taken_at),
        hostname="dss-host",
        processes=processes,
        roles=roles,
        cgroups=tuple(cgroups),
        stats=ScanStats(wall_seconds=0.05, cpu_seconds=0.04, seen=len(processes), new=0, classified=len(processes) - 1,
                        access_denied=0, vanished=0),
    )


def inventory(now):
    session = Activity(
        kind="notebook_session", id="sess-1", project_key="PRJ", name="Analysis <script>x</script>", owner="alice",
        state="idle", started_at=now - 7200, last_activity_at=now - 3600, pid=110,
        details={"kernel_id": "11111111-1111-4111-8111-111111111111", "notebook": "Analysis"},
    )
    session2 = Activity(
        kind="notebook_session", id="sess-2", project_key="PRJ", name="Quick look", owner="bob", state="busy",
        started_at=now - 600, last_activity_at=now - 5, pid=111,
        details={"kernel_id": "22222222-2222-4222-8222-222222222222"},
    )
    gone = Activity(kind="future", id="fut-9", project_key="PRJ", name="Build dataset", owner="alice",
                    state="running", started_at=now - 100)
    return Inventory(taken_at=now, activities=(session, session2, gone),
                     errors=(FailedListing("job", "BROKEN", "listing jobs failed: HTTP 500"),))
