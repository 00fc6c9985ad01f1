"""dss.py: one way to get a client; every call bounded by a timeout; reads retried, actions never."""
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from process_tracker import dss
from process_tracker.errors import ConfigError, DSSError, DSSForbidden, DSSUnreachable


class _Server:
    """A loopback HTTP server whose handler is given per test; counts requests per method."""

    def __init__(self, handler):
        self.calls = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _any(self):
                outer.calls.append((self.command, self.path))
                handler(self)

            do_GET = do_POST = do_DELETE = do_PUT = _any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server_with():
    servers = []

    def make(handler):
        s = _Server(handler)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def _reply(handler, status, body):
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def test_settings_resolve_from_arguments_then_environment_then_config_file(tmp_path):
    env = {"DKU_DSS_URL": "http://env:1/", "DKU_API_KEY": "envkey"}
    assert dss.client_from_settings("http://arg:2", "argkey", environ=env) == ("http://arg:2", "argkey", False)
    assert dss.client_from_settings(environ=env) == ("http://env:1", "envkey", False)
    conf = tmp_path / "config.json"
    conf.write_text(json.dumps({"dss_instances": {"default": {"url": "https://f:3", "api_key": "fk"},
                                                  "stage": {"url": "https://s:4", "api_key": "sk",
                                                            "no_check_certificate": True}}}))
    assert dss.client_from_settings(environ={}, config_file=str(conf)) == ("https://f:3", "fk", False)
    conf.write_text(json.dumps(dict(json.loads(conf.read_text()), default_instance="stage")))
    # the config file's instance says whether to check its certificate; an explicit flag wins
    assert dss.client_from_settings(environ={}, config_file=str(conf)) == ("https://s:4", "sk", True)
    assert dss.client_from_settings(environ={}, config_file=str(conf), no_check_certificate=False)[2] is False
    assert dss.client_from_settings(environ={}, config_file=str(tmp_path / "none.json")) == (None, None, False)


def test_no_environment_variable_turns_certificate_checks_off(tmp_path):
    env = {"DKU_DSS_URL": "https://env:1", "DKU_API_KEY": "k", "DKU_NO_CHECK_CERTIFICATE": "true"}
    assert dss.client_from_settings(environ=env, config_file=str(tmp_path / "none.json"))[2] is False


def test_bad_settings_name_the_parameter(tmp_path):
    missing = str(tmp_path / "none.json")
    with pytest.raises(ConfigError, match="^api_key: "):
        dss.client_from_settings("http://x", None, environ={}, config_file=missing)
    with pytest.raises(ConfigError, match="^url: "):
        dss.client_from_settings(None, "k", environ={}, config_file=missing)
    with pytest.raises(ConfigError, match="^url: .*http"):
        dss.client_from_settings("dss.example.com", "k", environ={}, config_file=missing)


def test_a_hung_dss_does_not_hang_the_caller(server_with):
    def hang(handler):
        time.sleep(5)

    server = server_with(hang)
    client = dss.get_client(server.url, "key", timeout=0.5, read_retries=0)
    started = time.monotonic()
    with pytest.raises(Exception) as info:
        client.list_project_keys()
    assert time.monotonic() - started < 3
    assert isinstance(dss.translate_error(info.value, "listing projects"), DSSUnreachable)


def test_reads_are_retried_on_5xx_but_actions_are_not(server_with):
    state = {"n": 0}

    def flaky(handler):
        state["n"] += 1
        if state["n"] == 1 or handler.command != "GET":
            _reply(handler, 503, {"errorType": "com.dataiku.Busy", "message": "busy"})
        else:
            _reply(handler, 200, [{"projectKey": "A"}])

    server = server_with(flaky)
    client = dss.get_client(server.url, "key", timeout=2)
    assert client.list_project_keys() == ["A"]
    with pytest.raises(Exception) as info:
        client.get_future("f1").abort()
    assert [c[0] for c in server.calls].count("DELETE") == 1
    err = dss.translate_error(info.value, "aborting f1")
    assert isinstance(err, DSSError) and err.status == 503
    assert str(err).startswith("aborting f1: com.dataiku.Busy: busy")


def test_errors_are_typed_from_the_http_status(server_with):
    def forbidden(handler):
        _reply(handler, 403, {"errorType": "com.dataiku.dip.exceptions.UnauthorizedException", "message": "nope"})

    server = server_with(forbidden)
    client = dss.get_client(server.url, "key", timeout=2)
    with pytest.raises(Exception) as info:
        client.list_futures(all_users=True)
    assert isinstance(dss.translate_error(info.value, "listing futures"), DSSForbidden)


def test_unreachable_dss_is_a_typed_error():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    client = dss.get_client("http://127.0.0.1:%d" % port, "key", timeout=1, read_retries=0)
    with pytest.raises(Exception) as info:
        client.list_project_keys()
    assert "cannot reach DSS" in str(dss.translate_error(info.value, "listing projects"))


def test_a_malformed_body_is_reported_as_such(server_with):
    def broken(handler):
        data = b'{"projectKey": '
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    server = server_with(broken)
    client = dss.get_client(server.url, "key", timeout=2)
    with pytest.raises(Exception) as info:
        client.list_project_keys()
    assert str(dss.translate_error(info.value, "listing projects")) == "listing projects: DSS answered with a malformed body"


def test_an_invalid_url_is_a_config_error_naming_the_url():
    client = dss.get_client("http://127.0.0.1:notaport", "key", timeout=1, read_retries=0)
    with pytest.raises(Exception) as info:
        client.list_project_keys()
    err = dss.translate_error(info.value, "listing projects")
    assert isinstance(err, ConfigError) and str(err).startswith("url: listing projects: the DSS URL is not valid")


# ----- the client DSS ships: every dataikuapi from 12.x to 15.x ----------------------------------------------
def test_the_matrix_runs_with_the_client_it_says():
    """`make test` runs this file once per client release; PT_EXPECT_CLIENT is the one that venv was built with."""
    import os

    expected = os.environ.get("PT_EXPECT_CLIENT")
    assert dss.client_version() is not None
    if expected:
        assert dss.client_version() == expected


@pytest.mark.parametrize("insecure", [False, True])
def test_a_client_is_built_the_same_way_with_every_release(simulator, insecure):
    """`no_check_certificate` was `insecure_tls` up to dataikuapi 13.3: one constructor call works on both."""
    import warnings

    from dev.dss_simulator.builders import instance

    sim = simulator(instance())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 15.x warns when given the old keyword
        client = dss.new_client(sim.url, sim.admin_key, no_check_certificate=insecure)
    assert client._session.verify is (not insecure)
    assert client.get_auth_info()["authIdentifier"] == "admin"
    via_cli = dss.cli_client(sim.url, sim.key_for("bob"), no_check_certificate=insecure, timeout=5)
    assert via_cli.get_auth_info()["authIdentifier"] == "bob"


def test_inside_dss_the_client_is_dss_own_even_with_env_and_config_file(simulator, tmp_path, monkeypatch):
    from dev.dss_simulator.builders import instance

    sim, other = simulator(instance()), simulator(instance())
    (tmp_path / ".dataiku").mkdir()
    (tmp_path / ".dataiku" / "config.json").write_text(json.dumps(
        {"dss_instances": {"default": {"url": other.url, "api_key": other.admin_key}}}))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DKU_DSS_URL", other.url)
    monkeypatch.setenv("DKU_API_KEY", other.admin_key)
    monkeypatch.setenv("DKU_BACKEND_PORT", str(sim.port))
    monkeypatch.setenv("DKU_API_TICKET", sim.ticket_for("alice"))
    for client in (dss.dss_client(), dss.get_client(), dss.get_client(inside_dss=True, timeout=5)):
        assert client.get_auth_info()["authIdentifier"] == "alice"
    assert other.requests == []
    # only the CLI reads them
    assert dss.get_client(inside_dss=False).get_auth_info()["authIdentifier"] == "admin"
    assert [r.path for r in other.requests] == ["/auth/info"]
    with pytest.raises(ConfigError, match="^url: inside DSS"):
        dss.get_client(other.url, other.admin_key, inside_dss=True)


def test_without_dss_identity_the_inside_getter_says_so(monkeypatch):
    monkeypatch.delenv("DKU_API_TICKET", raising=False)
    with pytest.raises(ConfigError, match="^dss: DSS gave this process no API client"):
        dss.dss_client()


# ----- versions ------------------------------------------------------------------------------------------------
def test_versions_are_read_once_per_client_and_described_in_one_line(simulator):
    from dev.dss_simulator.builders import instance

    sim = simulator(instance(dssVersion="14.3.0", dataDirPath="/srv/dss/data"))
    client = dss.install_timeouts(sim.client(), timeout=5)
    record = dss.versions(client, environ={})
    assert (record.dss_version, record.dss_major, record.data_dir) == ("14.3.0", 14, "/srv/dss/data")
    assert record.client_version == dss.client_version()
    assert dss.describe_versions(record) == "DSS 14.3.0, dataikuapi %s" % dss.client_version()
    assert dss.versions(client, environ={"DIP_HOME": "/opt/dss/"}).data_dir == "/opt/dss"  # DIP_HOME first
    assert dss.data_dir(client, environ={}) == "/srv/dss/data"
    assert [r.path for r in sim.requests].count("/instance-info") == 1


def test_a_dss_that_does_not_say_its_version_gives_empty_values_not_errors(simulator):
    from dev.dss_simulator.builders import instance

    sim = simulator(instance())
    sim.dss_version = None
    sim.data_dir = None
    record = dss.versions(sim.client(), environ={})
    assert (record.dss_version, record.dss_major, record.data_dir) == (None, None, None)
    assert dss.describe_versions(record).startswith("DSS version unknown, dataikuapi ")
    sim.stop()
    assert dss.versions(dss.new_client(sim.url, "k"), environ={}).dss_version is None  # unreachable: no error


# ----- a total deadline per call, and a bound on the answer's size ------------------------------------------------
def _trickle(handler, headers_too=False, length=True, gap_seconds=0.2, total_bytes=400):
    """Answer one byte at a time: each byte keeps a per-read timeout from ever firing."""
    if headers_too:
        for byte in b"HTTP/1.1 200 OK\r\n":
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            time.sleep(gap_seconds)
    handler.send_response(200)
    if length:
        handler.send_header("Content-Length", str(total_bytes))
    handler.send_header("Connection", "close")
    handler.end_headers()
    try:
        for _ in range(total_bytes):
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(gap_seconds)
    except OSError:
        pass


@pytest.mark.parametrize("shape", ["body", "headers", "body_without_length"])
def test_a_dss_trickling_its_answer_is_cut_at_the_deadline(server_with, shape):
    server = server_with(lambda h: _trickle(h, headers_too=shape == "headers", length=shape != "body_without_length"))
    client = dss.get_client(server.url, "key", timeout=1, inside_dss=False)
    started = time.monotonic()
    with pytest.raises(dss.DeadlineExceeded) as info:
        client.list_project_keys()
    elapsed = time.monotonic() - started
    assert elapsed < 10, elapsed  # the trickle lasts 80 s; a per-read timeout alone would wait for all of it
    err = dss.translate_error(info.value, "listing projects")
    assert isinstance(err, DSSUnreachable) and str(err) == "listing projects: DSS did not answer in time"
    assert [c[0] for c in server.calls] == ["GET"]  # a timed-out read is not retried


def test_an_answer_over_the_bound_is_refused(server_with):
    def big(handler, declared):
        handler.send_response(200)
        if declared:
            handler.send_header("Content-Length", str(10 ** 12))
        handler.send_header("Connection", "close")
        handler.end_headers()
        try:
            for _ in range(100):
                handler.wfile.write(b"[" + b"0," * 2000)
        except OSError:
            pass

    for declared in (True, False):
        server = server_with(lambda h, d=declared: big(h, d))
        client = dss.install_timeouts(dss.new_client(server.url, "key"), timeout=5, max_bytes=64 * 1024)
        with pytest.raises(dss.AnswerTooLarge, match="over the 65536-byte bound"):
            client.list_project_keys()
    assert dss.MAX_ANSWER_BYTES == 64 * 1024 * 1024


def test_a_normal_answer_is_read_whole_and_the_deadline_does_not_outlive_the_call(server_with):
    import threading

    server = server_with(lambda h: _reply(h, 200, [{"projectKey": "P%d" % i} for i in range(5000)]))
    client = dss.get_client(server.url, "key", timeout=2, inside_dss=False)
    assert len(client.list_project_keys()) == 5000
    before = threading.active_count()
    for _ in range(20):
        assert len(client.list_project_keys()) == 5000
    time.sleep(0.3)
    assert threading.active_count() <= before  # one watchdog for every call, not a thread per call


def test_the_cli_with_timeout_3_ends_soon_against_a_trickling_dss(server_with, tmp_path):
    import os
    import subprocess
    import sys

    server = server_with(lambda h: _trickle(h, gap_seconds=0.5))
    env = dict(os.environ, HOME=str(tmp_path))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "process_tracker", "--url", server.url, "--api-key", "k",
                           "--timeout", "3", "activities"], capture_output=True, text=True, env=env, timeout=120)
    elapsed = time.monotonic() - started
    assert done.returncode != 0
    assert "did not answer in time" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert elapsed < 30, elapsed  # each trickled answer would last 200 s
