"""One fake DSS process of the fleet (see dev/fleet.py). Not imported by anything: it is the program each fleet
process runs, as `./py -ESmfleet_proc <padding>` from the fleet's run directory. Standard library only, and
nothing heavy, so that ~25 of them start in well under a second.

Protocol (all set up by the parent, the fleet controller or another fleet process):
- stdin carries one JSON document: `{"fleet": {...shared...}, "node": {...this process and its subtree...}}`;
  it is read to EOF, then stdin is replaced by /dev/null.
- `fleet.lifeline` is the read end of a pipe whose write end only the controller holds: EOF means the controller
  is gone, and the process tears its subtree down and exits.
- `fleet.ready` is the write end of the readiness pipe: once its children are spawned, its memory allocated and
  its title rewritten, the process writes `ready <name> <pid>\\n` (or `error <name> <message>\\n`) and closes it.

The title: the launch argv was padded by the parent so that the argv area [arg_start, arg_end) (fields 48-49 of
/proc/self/stat) is exactly as long as the target command line, NUL-separated and NUL-terminated; the process
overwrites that area in place (ctypes.memmove), so /proc/<pid>/cmdline and psutil's cmdline() return the target
list exactly. The comm name is set with prctl(PR_SET_NAME).

Dying: PR_SET_PDEATHSIG(SIGTERM) (set after exec, hence after any uid change, which would clear it), the
lifeline, and a SIGTERM handler that terminates the children, reaps them (or SIGKILLs them after the grace
period), then exits. Children that die earlier are reaped by a SIGCHLD handler, so no zombie stays behind. SIGINT is ignored: Ctrl-C in a terminal reaches the whole
foreground process group, and the controller alone decides the teardown order.
"""
import ctypes
import json
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
_LIBC = ctypes.CDLL(None, use_errno=True)
_children = []  # pids of this process's children
_held = []  # the allocated memory, kept alive until exit
_grace_seconds = 5.0
_SPAWN_MASK = {signal.SIGCHLD, signal.SIGTERM}


def _prctl(option, value):
    if _LIBC.prctl(option, value, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "prctl(%d): %s" % (option, os.strerror(err)))


def _read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _argv_area():
    """(arg_start, arg_end) addresses of this process's argv strings, from /proc/self/stat fields 48-49."""
    with open("/proc/self/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2:].split()  # fields[0] is field 3 (state)
    return int(fields[48 - 3]), int(fields[49 - 3])


def _set_title(argv, comm):
    """Overwrite the argv area with `argv` (NUL-separated, NUL-terminated; must fill it exactly) and set comm."""
    target = b"".join(os.fsencode(a) + b"\0" for a in argv)
    start, end = _argv_area()
    if end - start != len(target):
        raise RuntimeError("argv area is %d bytes, title needs %d" % (end - start, len(target)))
    ctypes.memmove(start, target, len(target))
    _prctl(PR_SET_NAME, ctypes.c_char_p(os.fsencode(comm)[:15]))


def _spawn(child, fleet):
    """Fork and exec one child fleet process, then send it its configuration on its stdin."""
    read_end, write_end = os.pipe()
    signal.pthread_sigmask(signal.SIG_BLOCK, _SPAWN_MASK)  # record the pid before it can be reaped or missed
    pid = os.fork()
    if pid == 0:  # child: exec, or exit hard on any failure (never run the parent's code)
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handlers, even before exec
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SPAWN_MASK)
            os.close(write_end)
            os.dup2(read_end, 0)
            if child.get("process_group"):
                os.setpgid(0, 0)
            if child.get("gid") is not None:
                os.setgroups([])
                os.setgid(child["gid"])
            if child.get("uid") is not None:
                os.setuid(child["uid"])
            os.set_inheritable(fleet["lifeline"], True)
            os.set_inheritable(fleet["ready"], True)
            os.chdir(fleet["base"])
            os.execve(child["launch"][0], child["launch"], child["env"])
        except BaseException as exc:  # noqa: BLE001 - report anything, then exit without running the parent's code
            _report(fleet, "error", child["name"], "exec failed: %r" % (exc,))
        finally:
            os._exit(127)
    _children.append(pid)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _SPAWN_MASK)
    os.close(read_end)
    payload = json.dumps({"fleet": fleet, "node": child}).encode()
    view = memoryview(payload)
    while view:
        view = view[os.write(write_end, view):]
    os.close(write_end)


def _report(fleet, kind, name, text):
    line = ("%s %s %s\n" % (kind, name, text.replace("\n", " ")))[:500].encode()
    try:
        os.write(fleet["ready"], line)
    except OSError:
        pass


def _reap(*_args):
    """SIGCHLD handler: reap every exited child, so a pid in `_children` is always still ours to signal."""
    while _children:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            del _children[:]
            return
        if pid == 0:
            return
        if pid in _children:
            _children.remove(pid)


def _stop_children():
    """SIGTERM every child, wait up to the grace period for each to exit (reaping it), then SIGKILL the rest."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # reap synchronously from here on
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _children:  # not reaped yet, so the pid cannot have been reused
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + _grace_seconds
        while _children and time.monotonic() < deadline:
            for pid in list(_children):
                try:
                    done = os.waitpid(pid, os.WNOHANG)[0]
                except ChildProcessError:
                    done = pid
                if done:
                    _children.remove(pid)
            time.sleep(0.002)
        if not _children:
            return


def _exit(*_args):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _stop_children()
    os._exit(0)


def main():
    global _grace_seconds
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    config = json.loads(_read_all(0).decode())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    fleet, node = config["fleet"], config["node"]
    if os.getppid() != node["parent_pid"]:  # the parent died before PDEATHSIG was armed
        os._exit(1)
    _grace_seconds = float(fleet.get("grace_seconds", 5.0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, _reap)  # a child that dies (fleet.kill) is reaped at once: no zombie
    signal.signal(signal.SIGTERM, _exit)
    try:
        for child in node.get("children", ()):
            child["parent_pid"] = os.getpid()
            _spawn(child, fleet)
        try:
            os.chdir(node["cwd"])
        except OSError:
            os.chdir("/")
        if node.get("memory_bytes"):
            _held.append(b"\xa5" * int(node["memory_bytes"]))  # written, hence resident and anonymous (RssAnon)
        _set_title(node["argv"], node["comm"])
    except Exception as exc:  # noqa: BLE001 - reported to the controller, which fails the start
        _report(fleet, "error", node["name"], repr(exc))
        _exit()
    _report(fleet, "ready", node["name"], str(os.getpid()))
    os.close(fleet["ready"])
    while True:
        try:
            if not os.read(fleet["lifeline"], 1):  # EOF: the controller is gone
                break
        except InterruptedError:
            continue
    _exit()


if __name__ == "__main__":
    sys.exit(main())
