"""`process-tracker scan` as text (issue 13): the count of a role matches the processes listed under it, wrappers
are listed apart (their memory counts in the role, not their number), `--pss` shows PSS and USS in the table."""
import dataclasses

from process_tracker.commands.scan import format_table
from process_tracker.host import role_totals
from tests.sample_records import MiB, proc, snapshot


def uif_kernels():
    kernels = [dataclasses.replace(proc(100 + i, "jupyter_kernel", "kernel py3", 100 + i), pss_bytes=(110 + i) * MiB,
                                   uss_bytes=(90 + i) * MiB) for i in range(5)]
    wrappers = [dataclasses.replace(proc(200, "jupyter_kernel", "UIF wrapper (sudo)", 2), link=True),
                dataclasses.replace(proc(201, "jupyter_kernel", "UIF wrapper (exec.py)", 8), link=True)]
    records = kernels + wrappers
    return dataclasses.replace(snapshot(1_700_000_000.0, records), roles=role_totals(records))


def test_the_count_matches_the_processes_listed_and_wrappers_are_apart():
    lines = format_table(uif_kernels(), top=3).splitlines()
    assert lines[1].split()[:2] == ["jupyter_kernel", "5"]
    listed = [line for line in lines[2:5]]
    assert [line.split()[0] for line in listed] == ["104", "103", "102"]
    assert lines[5].strip() == "(2 more)"  # 3 + 2 = 5, the count
    assert lines[6].strip() == ("+ 2 wrappers (UIF wrapper (exec.py), UIF wrapper (sudo)): not counted, memory "
                                "10.0 MiB included above")


def test_pss_and_uss_are_shown_with_pss():
    plain = format_table(uif_kernels(), top=1)
    assert "PSS" not in plain
    lines = format_table(uif_kernels(), top=1, pss=True).splitlines()
    assert lines[0].split() == ["ROLE", "COUNT", "RSSANON", "RSS", "CPU"]
    assert lines[1].endswith("PSS 560.0 MiB  USS 460.0 MiB")  # the sum over the role's processes that have them
    assert lines[2].endswith("PSS 114.0 MiB  USS 94.0 MiB")
