"""render.py: units, rows, the summary line, and the three outputs (ResultTable, text, JSON) of the same rows."""
import json

from process_tracker import render
from process_tracker.activities import Activity, FailedListing
from process_tracker.policy import Decision

NOW = 1_700_000_000.0


def test_durations_bytes_and_times():
    assert [render.format_duration(s) for s in (None, 0, 59.4, 59.6, 89, 3599, 5 * 3600, 9.2 * 86400)] == [
        "", "0 s", "59 s", "1 min", "1 min", "1.0 h", "5.0 h", "9.2 d"]
    assert [render.format_bytes(b) for b in (None, 512, 1536, 300 * 1024**2, 1.5 * 1024**3)] == [
        "", "512 B", "1.5 KiB", "300.0 MiB", "1.5 GiB"]
    assert render.format_time(0) == "1970-01-01 00:00 UTC" and render.format_time(None) == ""
    assert render.format_hours(24.0) == "24 h" and render.format_hours(0.5) == "0.5 h"


def _activity(**kw):
    base = dict(kind="notebook_session", id="s1", project_key="P", name="<script>nb</script>", owner="alice",
                state="idle", started_at=NOW - 7200, last_activity_at=NOW - 3600, pid=42)
    base.update(kw)
    return Activity(**base)


def test_decision_rows_have_every_column_as_text():
    a = _activity()
    (row,) = render.decision_rows([Decision(a, True, "idle 1.0 h > 0.5 h")], NOW,
                                  {("notebook_session", "s1"): 2 * 1024**3})
    assert list(row) == [name for name, _ in render.ACTION_COLUMNS]
    assert row["outcome"] == "would_act" and row["memory"] == "2.0 GiB" and row["pid"] == "42"
    assert row["running"] == "2.0 h" and row["idle"] == "1.0 h" and row["name"] == "<script>nb</script>"
    assert all(isinstance(v, str) for v in row.values())


def test_error_rows_in_both_tables():
    e = FailedListing("webapp", "FRAUD", "listing webapps of project FRAUD: boom")
    (action,) = render.error_rows([e])
    assert action["outcome"] == "error" and action["project"] == "FRAUD" and action["message"].endswith("boom")
    (inv,) = render.error_rows([e], render.INVENTORY_COLUMNS)
    assert inv["kind"] == "error" and inv["name"] == "listing webapp" and inv["note"].endswith("boom")
    assert render.count_outcomes([inv]) == {"error": 1}


def test_summary_orders_outcomes_and_says_dry_run_or_applied():
    counts = {"spared": 2, "aborted": 1, "error": 1, "failed": 1}
    assert render.summary(counts, applied=True) == "Applied: 1 aborted, 1 failed, 2 spared, 1 error."
    assert render.summary({}, applied=False) == "Dry run (nothing was done): nothing found."
    assert render.summary({"listed": 3}) == "3 listed."


def test_the_three_outputs_show_the_same_rows():
    rows = render.decision_rows([Decision(_activity(), False, "spared: busy"),
                                 Decision(_activity(id="s2", name="x" * 100), True, "age 3.0 d > 48 h")], NOW)
    report = render.make_report("Idle Jupyter kernels", rows, applied=False, extra="Listed per project.")
    assert report.header == "Dry run (nothing was done): 1 would_act, 1 spared. Listed per project."
    table = render.to_result_table(report).to_json()
    assert table["name"] == "Idle Jupyter kernels" and table["header"] == report.header
    assert [c["name"] for c in table["columns"]] == [n for n, _ in render.ACTION_COLUMNS]
    assert all(c["type"] == "STRING" for c in table["columns"])
    names = [c["name"] for c in table["columns"]]
    assert [dict(zip(names, r)) for r in table["records"]] == rows
    data = json.loads(render.to_json(report))
    assert data["rows"] == rows and data["counts"] == {"spared": 1, "would_act": 1}
    assert "<script>nb</script>" in render.to_json(report)  # JSON escapes nothing
    text = render.to_text(report).splitlines()
    assert text[0] == report.header and "Memory" not in text[1]  # empty columns are left out of the text
    assert all(len(cell) <= 60 for line in text[3:] for cell in line.split("  "))
