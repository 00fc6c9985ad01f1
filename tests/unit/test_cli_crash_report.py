"""Where the CLI keeps the traceback of an unexpected error (issue 12, finding 6).

It used to append to a fixed name in the shared temp folder: a symlink planted there by another local user made
root's CLI append to any file. Now: a private per-user directory ($XDG_STATE_HOME/process-tracker, else
~/.local/state/process-tracker) created 0700 and refused when it is not owned by this user, not private, or a
symlink; one new file per crash opened with O_CREAT | O_EXCL | O_NOFOLLOW, mode 0600. When no safe place exists,
the traceback is kept nowhere but a debug log record, and the one line says why.
"""
import contextlib
import io
import os
import stat

import pytest

from process_tracker import cli
from process_tracker.commands import scan


@pytest.fixture
def crashing_scan(monkeypatch):
    def boom(args, make_client=None, out=None):
        raise RuntimeError("something nobody expected")

    monkeypatch.setattr(scan, "run", boom)


def run_cli(monkeypatch, tmp_path, state_home):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "shared-tmp"))
    monkeypatch.setattr("tempfile.tempdir", None)  # gettempdir() reads TMPDIR again
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if state_home is None:
        monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_STATE_HOME", str(state_home))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = cli.main(["scan"])
    return status, err.getvalue().strip()


def test_a_symlink_planted_in_the_shared_temp_folder_is_never_followed(monkeypatch, tmp_path, crashing_scan):
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    victim = tmp_path / "root-only-file"
    victim.write_text("precious\n")
    os.symlink(str(victim), str(shared / "process-tracker-error.log"))
    status, line = run_cli(monkeypatch, tmp_path, None)
    assert status == 1
    assert victim.read_text() == "precious\n"
    assert os.listdir(str(shared)) == ["process-tracker-error.log"]
    state_dir = tmp_path / "home" / ".local" / "state" / "process-tracker"
    (report,) = os.listdir(str(state_dir))
    assert line == "process-tracker: unexpected RuntimeError (traceback in %s)" % (state_dir / report)
    assert stat.S_IMODE(os.stat(str(state_dir)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(str(state_dir / report)).st_mode) == 0o600
    assert "something nobody expected" in (state_dir / report).read_text()


def test_xdg_state_home_is_used_and_each_crash_gets_its_own_file(monkeypatch, tmp_path, crashing_scan):
    state = tmp_path / "state"
    run_cli(monkeypatch, tmp_path, state)
    run_cli(monkeypatch, tmp_path, state)
    assert len(os.listdir(str(state / "process-tracker"))) == 2


@pytest.mark.parametrize("plant", ["world_writable", "symlink"])
def test_an_unsafe_directory_is_refused_and_the_line_says_why(monkeypatch, tmp_path, crashing_scan,
                                                                                plant, caplog):
    state = tmp_path / "state"
    state.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    if plant == "world_writable":
        (state / "process-tracker").mkdir()
        os.chmod(str(state / "process-tracker"), 0o777)
    else:
        os.symlink(str(elsewhere), str(state / "process-tracker"))
    caplog.set_level("DEBUG", logger="process_tracker.cli")
    status, line = run_cli(monkeypatch, tmp_path, state)
    assert status == 1
    assert line == ("process-tracker: unexpected RuntimeError (traceback not kept: %s is not a private folder of "
                    "this user; set XDG_STATE_HOME)" % (state / "process-tracker"))
    assert os.listdir(str(elsewhere)) == []
    if plant == "world_writable":
        assert os.listdir(str(state / "process-tracker")) == []
    assert "something nobody expected" in caplog.text
