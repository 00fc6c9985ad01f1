"""Running `python -m dev.demo` as a subprocess for the demo and browser tests, and proving it leaves nothing behind.

Not a test module: a helper imported by tests/integration/test_demo.py and tests/browser/test_*.py.
"""
import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


class DemoProcess:
    """`python -m dev.demo --port 0 --status-file ... <args>` in its own session, output to a log file."""

    def __init__(self, workdir, *args):
        self.workdir = str(workdir)
        self.status_path = os.path.join(self.workdir, "demo-status.json")
        self.log_path = os.path.join(self.workdir, "demo.log")
        self.args = list(args)
        self.proc = None
        self.status = None
        self.tree = []  # (pid, create_time) of the demo and every descendant, taken once it is ready

    def start(self, timeout_seconds=180.0):
        cmd = [sys.executable, "-m", "dev.demo", "--port", "0", "--status-file", self.status_path] + self.args
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout_seconds
        while not os.path.exists(self.status_path):
            if self.proc.poll() is not None:
                raise AssertionError("the demo exited with %s before it was ready:\n%s" % (self.proc.returncode, self.output()))
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError("the demo was not ready after %.0f s:\n%s" % (timeout_seconds, self.output()))
            time.sleep(0.2)
        with open(self.status_path) as f:
            self.status = json.load(f)
        root = psutil.Process(self.proc.pid)
        self.tree = [(p.pid, p.create_time()) for p in [root] + root.children(recursive=True)]
        return self.status

    def output(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout_seconds=60.0):
        """Send `sig` (SIGTERM or SIGINT, as Ctrl-C does) and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("the demo did not stop within %.0f s:\n%s" % (timeout_seconds, self.output())) from None

    def wait(self, timeout_seconds):
        try:
            return self.proc.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("the demo did not end within %.0f s:\n%s" % (timeout_seconds, self.output())) from None

    def kill(self):
        """Last resort for a failing test: kill the demo's whole session."""
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)

    def leftovers(self, timeout_seconds=10.0):
        """Processes of the demo's tree (same pid AND create time) still alive after `timeout_seconds`."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            alive = []
            for pid, created in self.tree:
                try:
                    p = psutil.Process(pid)
                    if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                        alive.append((pid, p.name()))
                except psutil.NoSuchProcess:
                    pass
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.2)


@contextlib.contextmanager
def running_demo(workdir, *args):
    """A started demo; on exit it must stop with status 0 and leave no process behind."""
    process = DemoProcess(workdir, *args)
    try:
        process.start()
        yield process
    finally:
        code = process.stop() if process.proc else None
        leftovers = process.leftovers()
        process.kill()
    assert code == 0, process.output()
    assert not leftovers, "processes left behind: %s" % leftovers
