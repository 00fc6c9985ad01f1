"""Plotly figures: they carry the data, stay JSON-safe and small, keep stable role colours, and never embed a
command line or a secret."""
import json

from process_tracker import charts, joins
from process_tracker.history import HistoryStore, role_samples
from sample_records import ML_SECRET, MiB, demo_processes, inventory, proc, snapshot
from process_tracker.webapp_table import join_table

NOW = 1_750_000_000.0


def dumped(fig):
    text = json.dumps(fig)
    assert ML_SECRET not in text and "ipykernel_launcher" not in text and "-Ddku" not in text
    return text


def trace_by_name(fig, name):
    return next(t for t in fig["data"] if t.get("name") == name)


def test_treemap_is_instance_role_process_with_top_n_and_other():
    procs = list(demo_processes()) + [proc(300 + i, "jupyter_kernel", "kernel python3", 10, ppid=105) for i in range(5)]
    fig = charts.treemap(procs, top_n=2)
    dumped(fig)
    t = fig["data"][0]
    assert t["type"] == "treemap" and t["branchvalues"] == "total"
    nodes = dict(zip(t["ids"], zip(t["parents"], t["values"])))
    kernel_role = "i:/data/dss/r:jupyter_kernel"
    assert nodes[kernel_role][0] == "i:/data/dss"
    assert nodes[kernel_role + "/p:110"] == (kernel_role, 1200.0)
    assert nodes[kernel_role + "/other"] == (kernel_role, 130.0)  # 80 + 5 x 10 MiB
    assert nodes[kernel_role][1] == 1200.0 + 300.0 + 130.0
    assert not any("not_dss" in i for i in t["ids"])  # non-DSS processes are not charted
    for node, (parent, value) in nodes.items():  # a parent holds at least its children
        children = sum(v for p, v in zip(t["parents"], t["values"]) if p == node)
        assert value >= children - 0.05


def test_java_xmx_has_rss_bars_and_xmx_markers():
    fig = charts.java_xmx(demo_processes())
    dumped(fig)
    rss = trace_by_name(fig, "RSS")
    xmx = trace_by_name(fig, "-Xmx")
    assert rss["x"] == xmx["x"] and len(rss["x"]) == 4  # backend, 2 JEKs, FEK
    assert rss["y"][0] == 2098.0 and xmx["y"][0] == 4096.0


def test_kernels_idle_memory_hovers_with_project_notebook_user_and_flags_orphans():
    fig = charts.kernels_idle_memory(joins.join(snapshot(NOW), inventory(NOW)), NOW)
    text = dumped(fig)
    listed = trace_by_name(fig, "sessions DSS lists")
    assert listed["y"] == [1200.0, 300.0] and listed["x"][0] == 1.0
    assert "PRJ / Analysis &lt;script&gt;" in listed["customdata"][0] and "<script>" not in text
    orphans = trace_by_name(fig, "orphan kernels")
    assert orphans["y"] == [80.0]


def uif_processes():
    """demo_processes with sess-1's kernel started through the UIF chain (sudo -> exec.py -> kernel), and a child."""
    base = [p for p in demo_processes() if p.pid != 110]
    return tuple(base) + (
        proc(130, "jupyter_kernel", "UIF wrapper (sudo)", 6, ppid=105, user="root", link=True),
        proc(131, "jupyter_kernel", "UIF wrapper (exec.py)", 12, ppid=130, link=True),
        proc(110, "jupyter_kernel", "kernel python3", 1200, ppid=131, kernel_id="11111111-1111-4111-8111-111111111111"),
        proc(140, "python_recipe", "child of the kernel", 40, ppid=110),
    )


def test_a_kernels_uif_wrappers_are_part_of_it_and_never_orphans_in_the_chart_or_the_table():
    """One orphan definition (joins.Joined.orphans): the chart's red points are exactly the Orphans tab's rows."""
    snap = snapshot(NOW, processes=uif_processes())
    fig = charts.kernels_idle_memory(joins.join(snap, inventory(NOW)), NOW)
    listed, orphans = trace_by_name(fig, "sessions DSS lists"), trace_by_name(fig, "orphan kernels")
    rows, orphan_rows, _ = join_table(snap.processes, inventory(NOW), NOW)
    assert [r["pid"] for r in orphan_rows] == [116]
    assert orphans["y"] == [80.0] and len(orphans["customdata"]) == len(orphan_rows)
    assert "pid 116" in orphans["customdata"][0]
    # sess-1's point is its kernel, with the memory of the kernel, its wrappers and its child
    sess1 = next(i for i, text in enumerate(listed["customdata"]) if "pid 110" in text)
    assert len(listed["y"]) == 2 and listed["y"][sess1] == 1200.0 + 6 + 12 + 40
    # the table: one row for sess-1 (its kernel's), one action, its processes in the row, memory summed
    sess1_rows = [r for r in rows if r["activity_id"] == "sess-1"]
    assert len(sess1_rows) == 1 and sess1_rows[0]["pid"] == 110 and sess1_rows[0]["actionable"] is True
    assert [p["pid"] for p in sess1_rows[0]["processes"]] == [110, 130, 131, 140]
    assert [p["via"] for p in sess1_rows[0]["processes"]] == ["session_pid", "wrapped", "wrapped", "ancestor"]
    assert sess1_rows[0]["rss_anon_bytes"] == (1200 + 6 + 12 + 40) * MiB
    assert not [r for r in rows if r["pid"] in (130, 131, 140)]
    assert not [t for t in fig["data"] if t["name"] not in ("sessions DSS lists", "orphan kernels")]


def test_cgroups_figure_or_none():
    assert charts.cgroups(()) is None
    fig = charts.cgroups(snapshot(NOW).cgroups)
    dumped(fig)
    assert trace_by_name(fig, "usage")["x"] == [1300.0] and trace_by_name(fig, "limit")["x"] == [2048.0]


def test_history_figures_stack_memory_with_stable_colours(tmp_path):
    store = HistoryStore(str(tmp_path), clock=lambda: NOW)
    store.record_series([
        (NOW - 600 + 10 * i, role_samples({"jek": (2, 700 * MiB, 800 * MiB, 1.0), "backend": (1, 2048 * MiB, 0, 0.0),
                                           "not_dss": (9, MiB, MiB, 0.0)}), [])
        for i in range(60)
    ])
    series = store.role_series("1h")
    memory = charts.memory_by_role(series)
    count = charts.count_by_role(series)
    dumped(memory), dumped(count)
    jek = trace_by_name(memory, charts.role_style("jek")[0])
    assert jek["stackgroup"] == "memory" and set(jek["y"]) == {700.0} and len(jek["x"]) == 60
    assert jek["line"]["color"] == trace_by_name(count, charts.role_style("jek")[0])["line"]["color"]
    assert jek["line"]["color"] == charts.role_style("jek")[1]
    assert memory["layout"]["xaxis"]["type"] == "date"
    assert len(memory["data"]) == 2  # not_dss is not charted


def test_role_rows_sum_per_role():
    rows = {r["role"]: r for r in charts.role_rows(demo_processes())}
    assert rows["jek"]["count"] == 2 and rows["jek"]["rss_anon_bytes"] == 1350 * MiB
    assert rows["jek"]["colour"].startswith("#")


def test_role_rows_count_a_uif_kernel_once_and_its_wrappers_memory_with_it():
    from dataclasses import replace

    kernel = proc(300, "jupyter_kernel", "kernel python3", 100)
    sudo = replace(proc(298, "jupyter_kernel", "UIF wrapper (sudo)", 4), link=True)
    exec_py = replace(proc(299, "jupyter_kernel", "UIF wrapper (exec.py)", 6), link=True)
    (row,) = charts.role_rows([sudo, exec_py, kernel])
    assert row["count"] == 1 and row["rss_anon_bytes"] == 110 * MiB
