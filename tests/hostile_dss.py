"""Helpers for tests that make the simulated DSS answer oddly, and that check where the plugin's requests went.

- `html_errors(sim, path_regex, status=502, lines=2000)`: from now on, requests whose path (under /dip/publicapi)
  matches answer an HTML error page, as a reverse proxy in front of DSS does. Wraps the simulator's WSGI app (the
  requests still go over real HTTP to the real client).
- `trickle`, `oversized`, `rewrite_answers` (with `set_fields`, `literal`): answers one byte now and then, answers
  over the size bound (streamed), and the simulator's real answers changed into odd shapes and values (a list as an
  object, strings where numbers go, 1e999, NaN), the same way.
- `run_in_pty(argv, env, columns=100)`: run a command with its stdout and stderr on a real pseudo-terminal of
  `columns` columns; returns (exit status, everything written, as text).
- `ALLOWED_ROUTES` and `outside_routes(requests, listed)`: the routes the faces may call, and the requests of a
  simulator log that fall outside them (an unknown route, or an activity route whose ids were never listed).
"""
import os
import pty
import re
import select
import struct
import subprocess
import termios
import fcntl

PREFIX = "/dip/publicapi"


def html_errors(sim, path_regex, status=502, lines=2000):
    """Make `sim` answer an HTML page with `status` to requests whose path matches `path_regex`. Returns an undo."""
    pattern = re.compile(path_regex)
    inner = sim.app.wsgi_app
    body = ("<!DOCTYPE html>\n<html><head><title>%d Bad Gateway</title></head><body>\n" % status
            + "".join("<p>nginx upstream error line %d</p>\n" % i for i in range(lines)) + "</body></html>\n")

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith(PREFIX) and pattern.search(path[len(PREFIX):]):
            start_response("%d Bad Gateway" % status, [("Content-Type", "text/html"),
                                                        ("Content-Length", str(len(body.encode())))])
            return [body.encode()]
        return inner(environ, start_response)

    sim.app.wsgi_app = app

    def undo():
        sim.app.wsgi_app = inner

    return undo


def run_in_pty(argv, env=None, columns=100, rows=40, timeout_seconds=120, stderr=None):
    """Run `argv` with stdout and stderr on a pseudo-terminal of `columns` x `rows`; (status, output text).
    `stderr`: elsewhere (e.g. subprocess.DEVNULL) when only stdout is to be read on the terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = dict(env or os.environ, COLUMNS=str(columns), LINES=str(rows), TERM="xterm")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave if stderr is None else stderr,
                            env=env, close_fds=True)
    os.close(slave)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], timeout_seconds)
            if not ready:
                proc.kill()
                break
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    status = proc.wait(timeout=timeout_seconds)
    return status, b"".join(chunks).decode("utf-8", "replace")


# ---- where requests may go -------------------------------------------------------------------------------------

SEG = r"[^/]+"
# (method, path regex, the kind whose listed ids the path names, and the names of those ids in the regex)
ALLOWED_ROUTES = [
    ("GET", r"/auth/info", None),
    ("POST", r"/auth/info-from-browser-headers", None),
    ("GET", r"/admin/groups/?", None),
    ("GET", r"/admin/groups/(?P<group>%s)" % SEG, None),
    ("GET", r"/admin/users/?", None),
    ("GET", r"/admin/users/(?P<login>%s)" % SEG, None),
    ("GET", r"/instance-info", None),
    ("GET", r"/projects/?", None),
    ("GET", r"/futures/?", None),
    ("GET", r"/admin/notebooks/?", None),
    ("GET", r"/jobs/running/?", None),
    ("GET", r"/projects/(?P<project>%s)/(jupyter-notebooks|notebooks|jobs|jobs/running|scenarios|webapps|"
            r"continuous-activities|code-studios)/?" % SEG, None),
    ("GET", r"/projects/(?P<project>%s)/jupyter-notebooks/(?P<notebook>%s)/sessions/?" % (SEG, SEG), None),
    ("POST", r"/projects/(?P<project>%s)/scenarios/?" % SEG, None),  # the installer creates its scenario
    # reads and stops of one activity: its ids must be ones the face listed
    ("GET|DELETE", r"/futures/(?P<id>%s)" % SEG, ("future", "scenario")),
    ("DELETE", r"/projects/(?P<project>%s)/jupyter-notebooks/(?P<notebook>%s)/sessions/(?P<id>%s)"
               % (SEG, SEG, SEG), ("notebook_session",)),
    ("GET|DELETE", r"/projects/(?P<project>%s)/notebooks/?" % SEG, None),
    ("GET", r"/projects/(?P<project>%s)/jobs/(?P<id>%s)/?" % (SEG, SEG), ("job",)),
    ("POST", r"/projects/(?P<project>%s)/jobs/(?P<id>%s)/abort" % (SEG, SEG), ("job",)),
    ("GET|PUT|POST", r"/projects/(?P<project>%s)/scenarios/(?P<sid>%s)(/light|/payload)?/?" % (SEG, SEG), None),
    ("POST", r"/projects/(?P<project>%s)/scenarios/(?P<id>%s)/abort" % (SEG, SEG), ("scenario",)),
    ("GET", r"/projects/(?P<project>%s)/webapps/(?P<id>%s)(/backend/state)?" % (SEG, SEG), ("webapp",)),
    ("PUT", r"/projects/(?P<project>%s)/webapps/(?P<id>%s)/backend/actions/stop" % (SEG, SEG), ("webapp",)),
    ("GET", r"/projects/(?P<project>%s)/continuous-activities/(?P<id>%s)/?" % (SEG, SEG), ("continuous_activity",)),
    ("POST", r"/projects/(?P<project>%s)/continuous-activities/(?P<id>%s)/stop" % (SEG, SEG),
     ("continuous_activity",)),
    ("GET", r"/projects/(?P<project>%s)/code-studios/(?P<id>%s)(/status)?" % (SEG, SEG), ("code_studio",)),
    ("POST", r"/projects/(?P<project>%s)/code-studios/(?P<id>%s)/stop" % (SEG, SEG), ("code_studio",)),
]
_COMPILED = [(set(m.split("|")), re.compile(r"\A%s\Z" % rx), kinds) for m, rx, kinds in ALLOWED_ROUTES]


def outside_routes(requests, known_projects, listed_ids):
    """The requests (simulator log entries) that are not allowed: a path outside the route table, a project that
    DSS does not have (a steered key), or an activity route naming an id the face never listed.

    `known_projects`: the instance's project keys; `listed_ids`: kind -> ids that could have been listed."""
    bad = []
    for r in requests:
        match = None
        for methods, regex, kinds in _COMPILED:
            found = regex.match(r.path)
            if found and r.method in methods:
                match = (found, kinds)
                break
        if match is None:
            bad.append((r.method, r.path, "no such route"))
            continue
        found, kinds = match
        groups = found.groupdict()
        if groups.get("project") is not None and groups["project"] not in known_projects:
            bad.append((r.method, r.path, "unknown project"))
        elif kinds and not any(groups["id"] in listed_ids.get(k, ()) for k in kinds):
            bad.append((r.method, r.path, "id never listed"))
    return bad


# ---- answers that are slow, huge or odd (issue 12): WSGI wrappers like `html_errors`, over real HTTP -------------


def _route(sim, path_regex, answer):
    """Requests whose path (under /dip/publicapi) matches are answered by `answer(environ, start_response, inner)`.
    Returns an undo."""
    pattern = re.compile(path_regex)
    inner = sim.app.wsgi_app

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith(PREFIX) and pattern.search(path[len(PREFIX):]):
            return answer(environ, start_response, inner)
        return inner(environ, start_response)

    sim.app.wsgi_app = app

    def undo():
        sim.app.wsgi_app = inner

    return undo


def trickle(sim, path_regex, gap_seconds=0.2, total_bytes=4000):
    """Matching requests get a 200 whose body comes one byte every `gap_seconds` (Content-Length `total_bytes`):
    a per-read timeout never fires, only a deadline on the whole answer ends it. The trickle stops when the client
    goes away or the simulator stops."""
    def answer(environ, start_response, inner):
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(total_bytes))])

        def body():
            for _ in range(total_bytes):
                yield b" "
                if sim.state.shutdown.wait(gap_seconds):
                    return
        return body()

    return _route(sim, path_regex, answer)


def oversized(sim, path_regex, total_bytes, chunk_bytes=1 << 20, declare_length=False):
    """Matching requests get a 200 JSON list of at least `total_bytes` (`[0,0,0,...,0]`), streamed in chunks of
    `chunk_bytes`, never built whole; without a Content-Length (chunked transfer) unless `declare_length`."""
    chunk = b"0," * (chunk_bytes // 2)
    size = 1 + len(chunk) * -(-(total_bytes - 1) // len(chunk)) + 2

    def answer(environ, start_response, inner):
        headers = [("Content-Type", "application/json")]
        if declare_length:
            headers.append(("Content-Length", str(size)))
        start_response("200 OK", headers)

        def body():
            yield b"["
            for _ in range((size - 3) // len(chunk)):
                if sim.state.shutdown.is_set():
                    return
                yield chunk
            yield b"0]"
        return body()

    return _route(sim, path_regex, answer)


LITERAL = "\x00literal:"  # json_text writes a string starting with this as the raw JSON that follows


def literal(text):
    """A value `json_text` writes as the raw JSON `text`: `literal("1e999")`, `literal("NaN")`."""
    return LITERAL + text


def json_text(value):
    """JSON text of `value`, with `literal(...)` strings written raw (numbers no JSON encoder writes: 1e999)."""
    import json

    text = json.dumps(value)
    return re.sub(r'"\\u0000literal:([^"]*)"', lambda m: m.group(1), text)


def rewrite_answers(sim, path_regex, change):
    """Successful JSON answers on matching paths become `json_text(change(value))`: odd shapes and values DSS (or a
    proxy, or a buggy version) could send, built from the simulator's real answer."""
    import json

    def answer(environ, start_response, inner):
        caught = {}

        def keep(status, headers, exc_info=None):
            caught.update(status=status, headers=headers)

        body = b"".join(inner(environ, keep))
        if not caught["status"].startswith("200"):
            start_response(caught["status"], caught["headers"])
            return [body]
        data = json_text(change(json.loads(body))).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    return _route(sim, path_regex, answer)


def set_fields(value, changes):
    """`value` (a JSON answer) with, in every object whose `key` field (dotted: nested) equals `id`, `fields`
    replaced: `changes` is {(key, id): {field: new value}}. Nested objects and lists are walked."""
    if isinstance(value, list):
        return [set_fields(v, changes) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: set_fields(v, changes) for k, v in value.items()}
    for (key, ident), fields in changes.items():
        found = out
        for part in key.split("."):  # "def.id": the id is in a nested object, the fields in this one
            found = found.get(part) if isinstance(found, dict) else None
        if found == ident:
            out.update(fields)
    return out
