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
    conf.write_text(json.dumps({"dss_instances": {"default": {"url": "https://f:3", "api_key": "fk"}}}))
    assert dss.client_from_settings(environ={"DKU_NO_CHECK_CERTIFICATE": "true"}, config_file=str(conf)) == (
        "https://f:3",
        "fk",
        True,
    )
    assert dss.client_from_settings(environ={}, config_file=str(tmp_path / "none.json")) == (None, None, False)


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
