"""Joins of host processes to DSS activities (python-lib/process_tracker/joins.py), from hand-built records only:
pid joins, kernel-id joins, descendants, wrappers, orphans, the JEK pool, activities not on this host."""
from process_tracker.activities import Activity, Inventory, FailedListing
from process_tracker.host import ProcessRecord, ScanStats, Snapshot, role_totals
from process_tracker.joins import STATUSES, join

D = "/data/dss"
K = {n: "%d%d%d%d%d%d%d%d-0000-4000-8000-000000000000" % ((n,) * 8) for n in range(1, 10)}


def rec(pid, ppid, role, link=False, kernel_id=None, instance=D, label=None):
    ids = {"kernel_id": kernel_id} if kernel_id else {}
    return ProcessRecord(pid=pid, ppid=ppid, created_at=1000.0 + pid, name="x", role=role, label=label or role,
                         user="dataiku", instance=instance if role != "not_dss" else None, rss_bytes=2 << 20,
                         rss_anon_bytes=1 << 20, ids=ids, link=link)


PROCESSES = (
    rec(1, 0, "not_dss"),
    rec(100, 1, "supervisord"),
    rec(101, 100, "backend"),
    rec(102, 101, "jek"),
    rec(103, 102, "python_recipe"),
    rec(104, 102, "spark_driver"),
    rec(105, 104, "spark_driver"),
    rec(106, 101, "jek"),  # idle, pre-started
    rec(107, 101, "fek"),
    rec(110, 100, "jupyter_server"),
    rec(111, 110, "jupyter_kernel", kernel_id=K[1]),  # session pid
    rec(112, 110, "jupyter_kernel", kernel_id=K[2]),  # session without pid: kernel id
    rec(113, 110, "jupyter_kernel", kernel_id=K[3]),  # no session: orphan
    rec(114, 113, "jupyter_kernel"),  # the orphan's child
    rec(120, 110, "jupyter_kernel", link=True, label="UIF wrapper (sudo)"),
    rec(121, 120, "jupyter_kernel", link=True, label="UIF wrapper (exec.py)"),
    rec(122, 121, "jupyter_kernel", kernel_id=K[4]),  # UIF kernel joined by kernel id
    rec(130, 110, "jupyter_kernel", link=True, label="UIF wrapper (sudo)"),
    rec(131, 130, "jupyter_kernel", kernel_id=K[5]),  # UIF kernel with no session: orphan
    rec(140, 101, "webapp_backend"),
    rec(141, 101, "webapp_backend"),  # no webapp: orphan
    rec(150, 101, "ml_training"),
    rec(200, 1, "not_dss"),  # holds a pid DSS gives for a job: reused, not joined
)


def act(kind, id_, pid=None, kernel_id=None):
    return Activity(kind=kind, id=id_, project_key="P", name=id_, owner="alice", state="running", pid=pid,
                    details={"kernel_id": kernel_id} if kernel_id else {})


ACTIVITIES = (
    act("notebook_session", "s1", pid=111, kernel_id=K[1]),
    act("notebook_session", "s2", kernel_id=K[2]),
    act("notebook_session", "s3", kernel_id=K[4].upper()),
    act("notebook_session", "s4", pid=9999, kernel_id=K[6]),  # its kernel is gone
    act("notebook_session", "s5", kernel_id=K[7]),  # a kernel elsewhere (container)
    act("job", "j1", pid=102),
    act("future", "f-same-pid", pid=102),  # the job wins the pid
    act("job", "j2", pid=200),  # the pid now belongs to a non-DSS process
    act("webapp", "w1", pid=140),
    act("future", "f1"),  # no pid: never "not on host"
)


def snapshot(processes=PROCESSES):
    stats = ScanStats(wall_seconds=0.0, cpu_seconds=0.0, seen=len(processes), new=0, classified=0, access_denied=0,
                      vanished=0)
    return Snapshot(taken_at=2000.0, hostname="h", processes=tuple(processes), roles=role_totals(processes),
                    cgroups=(), stats=stats)


def inventory(activities=ACTIVITIES, errors=()):
    return Inventory(taken_at=2000.0, activities=tuple(activities), errors=tuple(errors))


def _rows(joined):
    return {m.process.pid: m for m in joined.rows}


def test_each_process_gets_its_activity_and_how_it_was_joined():
    rows = _rows(join(snapshot(), inventory()))
    assert len(rows) == len(PROCESSES)
    expected = {
        102: ("j1", "job_pid", 102), 103: ("j1", "ancestor", 102), 104: ("j1", "ancestor", 102),
        105: ("j1", "ancestor", 102), 111: ("s1", "session_pid", 111), 112: ("s2", "kernel_id", 112),
        122: ("s3", "kernel_id", 122), 121: ("s3", "wrapped", 122), 120: ("s3", "wrapped", 122),
        140: ("w1", "webapp_pid", 140),
    }
    for pid, row in rows.items():
        got = (row.activity.id, row.via, row.via_pid) if row.activity else None
        assert got == expected.get(pid), pid
        assert row.status in STATUSES


def test_statuses_orphans_and_the_jek_pool():
    joined = join(snapshot(), inventory())
    status = {pid: m.status for pid, m in _rows(joined).items()}
    assert status[113] == status[114] == status[130] == status[131] == status[141] == "orphan"
    assert status[106] == "pool"
    assert status[100] == status[101] == status[107] == status[110] == status[150] == "unjoined"
    assert status[1] == status[200] == "not_dss"
    assert all(status[p] == "joined" for p in (102, 103, 104, 105, 111, 112, 120, 121, 122, 140))
    # one record per orphan unit: the kernels and the webapp, not the wrapper nor the orphan kernel's child
    assert [p.pid for p in joined.orphans] == [113, 131, 141]
    assert [p.pid for p in joined.pool] == [106]


def test_activities_whose_process_is_not_on_this_host():
    joined = join(snapshot(), inventory())
    assert sorted(a.id for a in joined.not_on_host) == ["j2", "s4", "s5"]  # f-same-pid's process is here


def test_matches_and_for_activity_cover_descendants_and_wrappers():
    joined = join(snapshot(), inventory())
    assert sorted(m.process.pid for m in joined.for_activity("job", "j1")) == [102, 103, 104, 105]
    assert sorted(m.process.pid for m in joined.for_activity("notebook_session", "s3")) == [120, 121, 122]
    assert all(m.activity is not None for m in joined.matches)
    assert len(joined.matches) == 10


def test_a_failed_session_listing_makes_kernels_unknown_not_orphans():
    errors = (FailedListing("notebook_session", "P", "listing notebooks failed: HTTP 500"),)
    joined = join(snapshot(), inventory(ACTIVITIES[5:], errors))
    status = {pid: m.status for pid, m in _rows(joined).items()}
    assert status[111] == status[113] == status[131] == status[114] == "unknown"
    assert [p.pid for p in joined.orphans] == [141]  # webapps were listed: still an orphan


def test_a_session_whose_pid_is_a_wrapper_carries_down_the_chain():
    activities = (act("notebook_session", "s-uif", pid=130),)
    rows = _rows(join(snapshot(), inventory(activities)))
    assert (rows[130].via, rows[131].via, rows[131].via_pid) == ("session_pid", "ancestor", 130)
    assert rows[131].status == "joined"


def test_joins_can_be_restricted_to_one_instance():
    other = (rec(299, 1, "jupyter_server", instance="/srv/dss2"),
             rec(300, 299, "jupyter_kernel", kernel_id=K[8], instance="/srv/dss2"))
    activities = ACTIVITIES + (act("notebook_session", "s8", kernel_id=K[8]),)
    joined = join(snapshot(PROCESSES + other), inventory(activities), instance=D)
    rows = _rows(joined)
    assert rows[300].activity is None and rows[300].status == "unjoined"
    assert "s8" in {a.id for a in joined.not_on_host}
    assert rows[111].activity.id == "s1"
    everything = _rows(join(snapshot(PROCESSES + other), inventory(activities)))
    assert everything[300].activity.id == "s8"


def test_a_parent_cycle_in_a_racy_snapshot_does_not_hang():
    procs = (rec(10, 11, "jek"), rec(11, 10, "python_recipe"), rec(12, 12, "jupyter_kernel"))
    joined = join(snapshot(procs), inventory((act("job", "j", pid=10),)))
    rows = _rows(joined)
    assert rows[10].activity.id == rows[11].activity.id == "j"
    assert [p.pid for p in joined.orphans] == [12]


def test_empty_inputs():
    joined = join(snapshot(()), inventory(()))
    assert joined.rows == joined.matches == joined.orphans == joined.pool == joined.not_on_host == ()


# ---- verified session joins (issue 10, finding 5) --------------------------------------------------------------
def _user(record, user):
    from dataclasses import replace

    return replace(record, user=user)


def test_a_kernel_id_claim_outside_the_jupyter_server_is_unverified_and_never_charged():
    spoof = _user(rec(400, 1, "jupyter_kernel", kernel_id=K[2]), "nobody")  # claims s2's kernel id
    spoof_child = rec(401, 400, "jupyter_kernel")
    joined = join(snapshot(PROCESSES + (spoof, spoof_child)), inventory())
    rows = _rows(joined)
    assert (rows[400].status, rows[400].activity, rows[400].claim.id) == ("unverified", None, "s2")
    assert (rows[401].status, rows[401].activity, rows[401].claim.id) == ("unverified", None, "s2")
    assert [m.process.pid for m in joined.unverified] == [400, 401]
    assert sorted(m.process.pid for m in joined.for_activity("notebook_session", "s2")) == [112]
    assert 400 not in {p.pid for p in joined.orphans} and rows[112].verified and not rows[400].verified


def test_a_kernel_inside_another_kernel_cannot_claim_a_session():
    """Bob's kernel (same unix user without UIF) starts a kernel with alice's id: it is not the server's child."""
    inner = rec(402, 111, "jupyter_kernel", kernel_id=K[2])
    rows = _rows(join(snapshot(PROCESSES + (inner,)), inventory()))
    # not s2's kernel; as a child of s1's kernel it is s1's process (the tree), and s2 is not charged with it
    assert (rows[402].activity.id, rows[402].via, rows[402].claim.id) == ("s1", "ancestor", "s2")


def test_the_unix_user_must_be_the_sessions_unix_owner_else_the_servers():
    uif = (rec(500, 110, "jupyter_kernel", link=True), rec(501, 500, "jupyter_kernel", link=True),
           _user(rec(502, 501, "jupyter_kernel", kernel_id=K[9]), "dssuser1"))
    owned = act("notebook_session", "s9", kernel_id=K[9])
    # the kernel runs as dssuser1, the Jupyter server as dataiku
    for owner, expected in ((None, "unverified"), ("dssuser1", "joined"), ("alice", "unverified")):
        session = owned if owner is None else act_owner(owned, owner)
        rows = _rows(join(snapshot(PROCESSES + uif), inventory(ACTIVITIES + (session,))))
        assert rows[502].status == rows[500].status == expected, owner
        # a session whose kernelPid is the sudo wrapper: the wrapped kernel's user is what is checked
        by_pid = _rows(join(snapshot(PROCESSES + uif), inventory((act_owner(
            act("notebook_session", "s9", pid=500), owner),))))
        assert by_pid[500].status == expected, owner


def act_owner(activity, owner):
    from dataclasses import replace

    details = dict(activity.details)
    if owner:
        details["unix_owner"] = owner
    return replace(activity, details=details)


def test_a_kernel_of_the_servers_own_unix_user_is_verified_whatever_the_session_says():
    """Without UIF, kernels run as the DSS unix user; what sessionUnixOwner then holds is unconfirmed."""
    rows = _rows(join(snapshot(), inventory((act_owner(act("notebook_session", "s2", kernel_id=K[2]), "alice"),))))
    assert rows[112].status == "joined"


def test_a_kernel_under_another_instances_server_or_unreadable_user_is_unverified():
    other_server = rec(600, 1, "jupyter_server", instance="/srv/dss2")
    cross = rec(601, 600, "jupyter_kernel", kernel_id=K[9])  # instance D, under dss2's server
    unreadable = _user(rec(602, 110, "jupyter_kernel", kernel_id=K[8]), None)
    activities = ACTIVITIES + (act("notebook_session", "s9", kernel_id=K[9]),
                               act("notebook_session", "s8", kernel_id=K[8]))
    rows = _rows(join(snapshot(PROCESSES + (other_server, cross, unreadable)), inventory(activities)))
    assert rows[601].status == rows[602].status == "unverified"


def test_sources_and_contexts():
    from process_tracker.context import Context

    contexts = {
        150: Context("cru", "ANALYSIS_ML_TRAIN", "P", "alice", {"analysis_id": "a1"}),  # no activity: explained
        107: Context("cru", "JOB_ACTIVITY", "P", "bob", {"job_id": "j3"}),  # names a listed job: cru join
        113: Context("cgroup", "jupyterKernels", "P", "carol", {}),  # an orphan kernel DSS's cgroup explains
    }
    activities = ACTIVITIES + (act("job", "j3"),)
    joined = join(snapshot(), inventory(activities), contexts=contexts)
    rows = _rows(joined)
    assert (rows[111].source, rows[103].source, rows[121].source) == ("api", "tree", "tree")
    assert (rows[107].activity.id, rows[107].via, rows[107].source, rows[107].status) == ("j3", "cru", "cru", "joined")
    assert (rows[150].activity, rows[150].source, rows[150].status) == (None, "cru", "explained")
    assert rows[150].context.project_key == "P"
    # a kernel no session explains stays an orphan with a cgroup context (every kernel has one), not with a CRU item
    assert (rows[113].status, rows[113].source, rows[113].context.user) == ("orphan", "cgroup", "carol")
    assert 113 in [p.pid for p in joined.orphans]
    cru_kernel = dict(contexts)
    cru_kernel[113] = Context("cru", "JUPYTER_NOTEBOOK_KERNEL", "P", "carol", {})
    cru_kernel[114] = cru_kernel[113].inherited(113)
    rows = _rows(join(snapshot(), inventory(activities), contexts=cru_kernel))
    assert (rows[113].status, rows[114].status) == ("explained", "explained")
    assert rows[101].source is None and rows[101].status == "unjoined"
    # an item of another instance's audit log does not join this instance's activity
    elsewhere = dict(contexts)
    elsewhere[107] = Context("cru", "JOB_ACTIVITY", "P", "bob", {"job_id": "j3"}, "/srv/dss2")
    row = _rows(join(snapshot(), inventory(activities), contexts=elsewhere))[107]
    assert (row.activity, row.status, row.source) == (None, "explained", "cru")


def test_a_session_whose_only_claimant_is_unverified_is_not_on_this_host():
    without_kernel = tuple(p for p in PROCESSES if p.pid != 112)
    spoof = _user(rec(400, 1, "jupyter_kernel", kernel_id=K[2]), "nobody")
    joined = join(snapshot(without_kernel + (spoof,)), inventory())
    assert "s2" in {a.id for a in joined.not_on_host}
    assert joined.for_activity("notebook_session", "s2") == ()
