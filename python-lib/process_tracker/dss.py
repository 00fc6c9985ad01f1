"""Getting a DSSClient inside or outside DSS, with a deadline on every call, bounded retries of reads, the
versions in use, and typed errors.

Two ways to get a client, and only two (docs/architecture.md, "Identity"):
- `dss_client()`: plugin code running inside DSS (a macro, the webapp backend). Always `dataiku.api_client()`, the
  client DSS builds for the user running the macro or the webapp's run-as user, whatever the environment or
  `~/.dataiku/config.json` say: those are how Dataiku's tools connect from *outside* DSS.
- `cli_client(...)`: the command line, outside DSS. Explicit arguments, then `DKU_DSS_URL` + `DKU_API_KEY`, then
  the config file's default instance (with its `no_check_certificate`); `dataiku.api_client()` when none is set.
`get_client(..., inside_dss=...)` is the older single entry point over both.

dataikuapi sets no timeout and no retry: a hung DSS would hang a macro or the webapp forever, and requests' read
timeout is per socket read, so a DSS trickling a byte now and then would too. Every client returned here has a
transport adapter that gives each HTTP call a total deadline (connect, headers and the whole body; docs/reliability.md
"Deadlines"), refuses answers larger than `MAX_ANSWER_BYTES`, and retries idempotent reads (GET/HEAD) with backoff on
connection errors and 5xx answers within that deadline. Actions (POST/PUT/DELETE) are never retried blindly.

Errors from the client become a few typed exceptions where they enter the code (`translate_error`).
This module never imports `dataiku` at module level: the plugin code must import outside DSS too.
"""
import heapq
import inspect
import itertools
import json
import logging
import math
import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional

import requests

from .errors import (
    ConfigError,
    DSSError,
    DSSForbidden,
    DSSNotFound,
    DSSUnauthorized,
    DSSUnreachable,
    ProcessTrackerError,
)

DEFAULT_CONNECT_TIMEOUT_SECONDS = 5.0
DEFAULT_READ_TIMEOUT_SECONDS = 30.0
DEFAULT_READ_RETRIES = 2
RETRY_BACKOFF_SECONDS = 0.2
RETRY_STATUSES = (500, 502, 503, 504)
IDEMPOTENT_METHODS = frozenset(["GET", "HEAD"])
POOL_MAXSIZE = 64  # connections kept per host: the fan-out runs up to 64 concurrent calls
MAX_ANSWER_BYTES = 64 * 1024 * 1024  # a listing of 100,000 futures is ~50 MiB; more is not an answer we can use
_CHUNK_BYTES = 64 * 1024

_last_status = threading.local()
_inflight = threading.local()  # the deadline box of the call running on this thread (see _Deadline)
_answered = {"monotonic": None}  # time.monotonic() of the last whole answer a call got: last_answer_monotonic

__all__ = [
    "dss_client",
    "cli_client",
    "get_client",
    "new_client",
    "install_timeouts",
    "translate_error",
    "client_from_settings",
    "Versions",
    "versions",
    "describe_versions",
    "data_dir",
    "AnswerTooLarge",
    "DeadlineExceeded",
    "MAX_ANSWER_BYTES",
]


def _read_config_file(path):
    """The real `dataiku` package's way outside DSS: ~/.dataiku/config.json, its `default_instance`.
    Returns (url, api_key, no_check_certificate), Nones when the file does not exist."""
    try:
        with open(path) as f:
            conf = json.load(f)
    except FileNotFoundError:
        return None, None, None
    except (OSError, ValueError) as e:
        raise ConfigError("config_file", "cannot read %s: %s" % (path, e.__class__.__name__)) from None
    if not isinstance(conf, dict):
        return None, None, None
    instances = conf.get("dss_instances")
    inst = instances.get(conf.get("default_instance") or "default") if isinstance(instances, dict) else None
    if not isinstance(inst, dict):
        return None, None, None
    return inst.get("url"), inst.get("api_key"), bool(inst.get("no_check_certificate", False))


def client_from_settings(url=None, api_key=None, no_check_certificate=None, environ=None, config_file=None):
    """Resolve (url, api_key, no_check_certificate) the way Dataiku's tools do outside DSS (the CLI only).

    Order: explicit arguments, then DKU_DSS_URL + DKU_API_KEY, then ~/.dataiku/config.json (its default instance,
    and that instance's `no_check_certificate` when the URL comes from the file). An explicit
    `no_check_certificate` wins. No environment variable turns certificate checks off (none does in Dataiku's
    tooling). Returns None for the URL when nothing is configured.
    """
    env = os.environ if environ is None else environ
    url = url or env.get("DKU_DSS_URL")
    api_key = api_key or env.get("DKU_API_KEY")
    file_insecure = None
    if not (url and api_key):
        path = config_file or os.path.join(os.path.expanduser("~"), ".dataiku", "config.json")
        file_url, file_key, file_insecure = _read_config_file(path)
        if url and file_url and url.rstrip("/") != file_url.rstrip("/"):
            file_key, file_insecure = None, None  # the file's key belongs to another instance
        url = url or file_url
        api_key = api_key or file_key
    if no_check_certificate is None:
        no_check_certificate = bool(file_insecure)
    if url and not api_key:
        raise ConfigError("api_key", "a DSS URL is set (%r) but no API key: set DKU_API_KEY or --api-key" % url)
    if api_key and not url:
        raise ConfigError("url", "an API key is set but no DSS URL: set DKU_DSS_URL or --url")
    if url and not url.startswith(("http://", "https://")):
        raise ConfigError("url", "the DSS URL must start with http:// or https://, got %r" % url)
    return (url.rstrip("/") if url else None), api_key, bool(no_check_certificate)


def _tls_keyword():
    """The DSSClient keyword that turns certificate checks off: `no_check_certificate` from dataikuapi 13.4,
    `insecure_tls` before (12.x to 13.3). None when the constructor has neither."""
    import dataikuapi

    params = inspect.signature(dataikuapi.DSSClient.__init__).parameters
    for name in ("no_check_certificate", "insecure_tls"):
        if name in params:
            return name
    return None


def new_client(url, api_key=None, internal_ticket=None, no_check_certificate=False):
    """A bare `dataikuapi.DSSClient`, built the same way with every client DSS 12 to 15 ships."""
    import dataikuapi

    kwargs = {}
    keyword = _tls_keyword() if no_check_certificate else None
    if keyword:
        kwargs[keyword] = True
    client = dataikuapi.DSSClient(url, api_key, internal_ticket, **kwargs)
    if no_check_certificate and not keyword:  # pragma: no cover - no known release lacks both keywords
        client._session.verify = False
    return client


def dss_client(timeout=None, read_retries=DEFAULT_READ_RETRIES):
    """Inside DSS: `dataiku.api_client()`, the client DSS builds for the user running this code (a macro's user,
    a scenario's run-as user, the webapp's run-as user), with deadlines. Never reads DKU_DSS_URL, DKU_API_KEY
    or ~/.dataiku/config.json: a config file in the DSS unix user's home must not replace that identity."""
    try:
        import dataiku
    except ImportError:
        raise ConfigError("dss", "not running inside DSS (no `dataiku` package): use the process-tracker CLI "
                          "with --url and --api-key") from None
    try:
        client = dataiku.api_client()
    except Exception as exc:  # noqa: BLE001 - the real package raises a bare Exception when it has no ticket
        raise ConfigError("dss", "DSS gave this process no API client (%s)" % exc.__class__.__name__) from None
    return install_timeouts(client, timeout=timeout, read_retries=read_retries)


def cli_client(url=None, api_key=None, no_check_certificate=None, timeout=None, read_retries=DEFAULT_READ_RETRIES,
               environ=None, config_file=None):
    """Outside DSS (the CLI): a client from the arguments, DKU_DSS_URL + DKU_API_KEY or ~/.dataiku/config.json
    (`client_from_settings`); when none is set, `dataiku.api_client()` (a CLI run from a DSS terminal)."""
    resolved_url, resolved_key, insecure = client_from_settings(url, api_key, no_check_certificate, environ,
                                                                config_file)
    if not resolved_url:
        try:
            return dss_client(timeout=timeout, read_retries=read_retries)
        except ConfigError:
            raise ConfigError("url", "no DSS configured: set DKU_DSS_URL and DKU_API_KEY (or pass --url and "
                              "--api-key, or add ~/.dataiku/config.json)") from None
    client = new_client(resolved_url, resolved_key, no_check_certificate=insecure)
    return install_timeouts(client, timeout=timeout, read_retries=read_retries)


def get_client(url=None, api_key=None, no_check_certificate=None, timeout=None, read_retries=DEFAULT_READ_RETRIES,
               inside_dss=None):
    """The older single entry point: `dss_client` when `inside_dss` (the default when no URL or key is given:
    the safe choice for plugin code), `cli_client` otherwise."""
    if inside_dss is None:
        inside_dss = not (url or api_key)
    if inside_dss:
        if url or api_key or no_check_certificate:
            raise ConfigError("url", "inside DSS the client is DSS's own: no URL, key or TLS setting applies")
        return dss_client(timeout=timeout, read_retries=read_retries)
    return cli_client(url, api_key, no_check_certificate, timeout=timeout, read_retries=read_retries)


# ----- versions --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Versions:
    """What a client talks to: `dss_version` ("14.3.0", None when DSS does not say), `data_dir` (DIP_HOME, or
    DSS's `dataDirPath`; None when neither is known), `client_version` (the dataikuapi in use, None if unknown)."""

    dss_version: Optional[str]
    data_dir: Optional[str]
    client_version: Optional[str]

    @property
    def dss_major(self):
        """12, 13, 14, 15... or None when the version is unknown or not a number."""
        try:
            return int(str(self.dss_version).split(".")[0])
        except ValueError:
            return None


def client_version():
    """The version of the dataikuapi in use (inside DSS: the one DSS ships), None when it cannot be told."""
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - Python < 3.8
        return None
    try:
        return version("dataiku-api-client")
    except PackageNotFoundError:
        import dataikuapi

        return getattr(dataikuapi, "__version__", None)


def _text(value, limit=200):
    return value.strip()[:limit] or None if isinstance(value, str) else None


def versions(client, environ=None):
    """The `Versions` of `client`, read once per client from `get_instance_info()` (GET /instance-info, every
    DSS 12 to 15). A failing call gives Nones (not cached: the next call tries again); never raises for it."""
    cached = getattr(client, "_process_tracker_versions", None)
    if cached is None:
        try:
            raw = client.get_instance_info().raw
        except Exception:  # noqa: BLE001 - versions are informative: a failure must not fail a run
            raw = None
        cached = (_text(raw.get("dssVersion"), 40), _text(raw.get("dataDirPath"), 4096)) if isinstance(
            raw, dict) else None
        if cached is not None:
            try:
                client._process_tracker_versions = cached
            except AttributeError:  # pragma: no cover - a client with __slots__
                pass
    dss_version, data_dir_path = cached or (None, None)
    env = os.environ if environ is None else environ
    return Versions(dss_version, (env.get("DIP_HOME") or "").rstrip("/") or data_dir_path, client_version())


def data_dir(client=None, environ=None):
    """DSS's data directory: DIP_HOME from the environment, else DSS's own `dataDirPath` (when a client is given)."""
    env = os.environ if environ is None else environ
    if env.get("DIP_HOME"):
        return env["DIP_HOME"].rstrip("/") or None
    return versions(client, env).data_dir if client is not None else None


def describe_versions(record):
    """One line for a macro's header or the webapp's footer: "DSS 14.3.0, dataikuapi 14.7.5"."""
    dss_part = "DSS %s" % record.dss_version if record.dss_version else "DSS version unknown"
    client_part = "dataikuapi %s" % record.client_version if record.client_version else "dataikuapi version unknown"
    return "%s, %s" % (dss_part, client_part)


# ----- transport: deadlines, answer size, retries -------------------------------------------------------------
class DeadlineExceeded(requests.exceptions.ReadTimeout):
    """No complete answer within the call's deadline (connect, headers and the whole body)."""


class AnswerTooLarge(requests.exceptions.RequestException):
    """DSS's answer is larger than the bound (`MAX_ANSWER_BYTES`): refused rather than held in memory."""


def _shutdown(sock):
    """End `sock` from another thread: a blocked read returns at once. The base-class shutdown, so that a TLS socket
    is not touched from two threads; it works after the connection was closed while the response still reads."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, TypeError, ValueError):
        pass


class _Deadline:
    """The wall-clock bound of one call. When it passes (`_WATCHDOG` calls `fire`), the socket the call is using is
    shut down (so a DSS trickling bytes cannot keep a read alive), and the call's retries are refused."""

    POLL_SECONDS = 0.1  # while connecting there is no socket yet: look again

    def __init__(self, seconds):
        self.lock = threading.Lock()
        self.sock = None
        self.fired = False
        self.done = threading.Event()
        self.due_at = time.monotonic() + seconds

    def fire(self):
        """Past the deadline: shut the socket down. True when the watchdog must look again (no socket yet)."""
        with self.lock:
            self.fired = True
            sock = self.sock
        if self.done.is_set():
            return False
        if sock is None:
            return True
        _shutdown(sock)
        return False

    def watch(self, sock):
        if sock is None:
            return
        with self.lock:
            self.sock = sock
            fired = self.fired
        if fired:
            _shutdown(sock)

    def finish(self):
        self.done.set()


class _Watchdog:
    """One daemon thread for every call's deadline (a thread per call would cost ~1 ms each): a heap of boxes by
    due time; a finished call's box is dropped when it comes up."""

    def __init__(self):
        self.cond = threading.Condition()
        self.heap = []
        self.order = itertools.count()
        self.thread = None

    def add(self, box, due_at=None):
        with self.cond:
            heapq.heappush(self.heap, (box.due_at if due_at is None else due_at, next(self.order), box))
            if self.thread is None or not self.thread.is_alive():  # first use, or after a fork
                self.thread = threading.Thread(target=self._run, name="process-tracker-deadlines", daemon=True)
                self.thread.start()
            self.cond.notify()

    def _next_due(self):
        """The next box past its deadline (under the lock), or None after waiting for one."""
        while self.heap and self.heap[0][2].done.is_set():
            heapq.heappop(self.heap)
        if not self.heap:
            self.cond.wait()
            return None
        wait = self.heap[0][0] - time.monotonic()
        if wait > 0:
            self.cond.wait(wait)
            return None
        return heapq.heappop(self.heap)[2]

    def _run(self):
        while True:
            with self.cond:
                box = self._next_due()
            if box is not None and box.fire():
                self.add(box, time.monotonic() + box.POLL_SECONDS)


_WATCHDOG = _Watchdog()


def _watch(sock):
    box = getattr(_inflight, "box", None)
    if box is not None:
        box.watch(sock)


def _watched_pool_classes():
    """urllib3's pools and connections, telling the running call's deadline which socket it uses (a pooled one, or
    a new one once connected) and refusing retries once the deadline has passed. urllib3 1.26 and 2.x both have
    these methods and attributes."""
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
    from urllib3.exceptions import ReadTimeoutError

    class _WatchedConnection:
        def connect(self):
            super().connect()
            _watch(self.sock)

    class _WatchedPool:
        def _get_conn(self, timeout=None):
            conn = super()._get_conn(timeout)
            _watch(getattr(conn, "sock", None))
            return conn

        def urlopen(self, *args, **kwargs):
            box = getattr(_inflight, "box", None)
            if box is not None and box.fired:
                url = kwargs.get("url", args[1] if len(args) > 1 else "")
                raise ReadTimeoutError(self, url, "the call's deadline has passed")
            return super().urlopen(*args, **kwargs)

    class WatchedHTTP(_WatchedPool, HTTPConnectionPool):
        ConnectionCls = type("WatchedHTTPConnection", (_WatchedConnection, HTTPConnection), {})

    class WatchedHTTPS(_WatchedPool, HTTPSConnectionPool):
        ConnectionCls = type("WatchedHTTPSConnection", (_WatchedConnection, HTTPSConnection), {})

    return {"http": WatchedHTTP, "https": WatchedHTTPS}


def _read_body(response, max_bytes):
    """Read the whole body now (the deadline is still armed), refusing more than `max_bytes`."""
    declared = response.headers.get("Content-Length")
    if declared and declared.strip().isdigit() and int(declared) > max_bytes:
        response.close()
        raise AnswerTooLarge("DSS's answer is %s bytes, over the %d-byte bound" % (declared.strip(), max_bytes))
    chunks, size = [], 0
    for chunk in response.iter_content(_CHUNK_BYTES):
        size += len(chunk)
        if size > max_bytes:
            response.close()
            raise AnswerTooLarge("DSS's answer is over the %d-byte bound" % max_bytes)
        chunks.append(chunk)
    response._content = b"".join(chunks)


def _make_adapter(timeout, read_retries, deadline_seconds, max_bytes):
    from requests.adapters import HTTPAdapter
    from requests.exceptions import RequestException
    from urllib3.exceptions import ReadTimeoutError
    from urllib3.util.retry import Retry

    class _Retry(Retry):
        """Retries of reads on connection errors, resets and 5xx, not after a read timed out: DSS did not answer for
        a whole read timeout, and the call's deadline would not leave a retry the time to complete."""

        def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
            if isinstance(error, ReadTimeoutError):
                raise error
            return super().increment(method, url, response, error, _pool, _stacktrace)

    retry = _Retry(
        total=read_retries, connect=read_retries, read=read_retries, status=read_retries, other=0,
        backoff_factor=RETRY_BACKOFF_SECONDS, status_forcelist=RETRY_STATUSES, allowed_methods=IDEMPOTENT_METHODS,
        raise_on_status=False, respect_retry_after_header=False,
    )
    classes = _watched_pool_classes()

    class _DeadlineAdapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = classes

        def proxy_manager_for(self, proxy, **kwargs):
            manager = super().proxy_manager_for(proxy, **kwargs)
            manager.pool_classes_by_scheme = classes
            return manager

        def send(self, request, stream=False, timeout=None, **kwargs):
            box = _Deadline(deadline_seconds)
            _inflight.box = box
            _WATCHDOG.add(box)
            try:
                response = super().send(request, stream=stream, timeout=timeout or default_timeout, **kwargs)
                _last_status.value = response.status_code
                if not stream:  # a streamed answer is read by the caller: its deadline covers the headers only
                    _read_body(response, max_bytes)
            except RequestException:
                if box.fired:
                    raise DeadlineExceeded("no complete answer from DSS within %g s" % deadline_seconds) from None
                raise
            finally:
                box.finish()
                _inflight.box = None
            if box.fired:  # an answer without a length, cut at the deadline, is not an answer
                raise DeadlineExceeded("no complete answer from DSS within %g s" % deadline_seconds)
            _answered["monotonic"] = time.monotonic()
            return response

    default_timeout = timeout
    return _DeadlineAdapter(max_retries=retry, pool_maxsize=POOL_MAXSIZE)


def last_answer_monotonic():
    """time.monotonic() when a call of this process last got a whole answer from DSS (any status), or None: how a
    waiting view tells a DSS that answers slowly from one that answers nothing (webapp_listing)."""
    return _answered["monotonic"]


def _check_seconds(name, value):
    values = value if isinstance(value, tuple) else (value,)
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0
                         for v in values):
        # a negative, zero, NaN or infinite timeout would fail every call obscurely, or never time out
        raise ConfigError(name, "must be a number of seconds > 0, got %r" % (value,))


def install_timeouts(client, timeout=None, read_retries=DEFAULT_READ_RETRIES, deadline_seconds=None,
                     max_bytes=MAX_ANSWER_BYTES):
    """Bound every HTTP call of `client`, and retry idempotent reads (within the bound). Returns the client.

    `timeout`: seconds, or a (connect, per-read) tuple; default (5, 30). `deadline_seconds`: the total bound of a
    call, retries included; default the timeout (a tuple: connect + read). `max_bytes`: the largest answer read.
    """
    if timeout is None:
        timeout = (DEFAULT_CONNECT_TIMEOUT_SECONDS, DEFAULT_READ_TIMEOUT_SECONDS)
    _check_seconds("timeout", timeout)
    if deadline_seconds is None:
        deadline_seconds = float(sum(timeout)) if isinstance(timeout, tuple) else float(timeout)
    if not isinstance(timeout, tuple):
        timeout = (min(float(timeout), DEFAULT_CONNECT_TIMEOUT_SECONDS), float(timeout))
    _check_seconds("deadline_seconds", deadline_seconds)
    session = getattr(client, "_session", None)
    if session is None:  # pragma: no cover - every dataikuapi client since 2.x has one
        return client
    adapter = _make_adapter(timeout, read_retries, float(deadline_seconds), int(max_bytes))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return client


def _retried_until_timeout(exc):
    """A read whose retries all timed out: requests raises ConnectionError(MaxRetryError(ReadTimeoutError)), which
    is a DSS that does not answer, not one that cannot be reached."""
    from urllib3.exceptions import ReadTimeoutError

    reason = getattr(exc.args[0], "reason", None) if getattr(exc, "args", None) else None
    return isinstance(reason, ReadTimeoutError)


def translate_error(exc, what):
    """Turn an exception raised by a dataikuapi call into a typed `DSSError` naming `what` was being done.

    Unknown exceptions (programming errors) are returned as is, to be re-raised by the caller.
    """
    from dataikuapi.utils import DataikuException

    if isinstance(exc, ProcessTrackerError):  # already typed (a ConfigError is also a ValueError: not a body)
        return exc
    if isinstance(exc, AnswerTooLarge):  # DSS answered, too much: not an unreachable DSS
        return DSSError("%s: %s" % (what, exc))
    if isinstance(exc, requests.exceptions.Timeout) or _retried_until_timeout(exc):
        return DSSUnreachable("%s: DSS did not answer in time" % what)
    if isinstance(exc, requests.exceptions.ConnectionError):
        return DSSUnreachable("%s: cannot reach DSS" % what)
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                        requests.exceptions.MissingSchema)):
        return ConfigError("url", "%s: the DSS URL is not valid (%s)" % (what, exc.__class__.__name__))
    if isinstance(exc, ValueError) and not isinstance(exc, DataikuException):
        # json / requests JSONDecodeError is a ValueError: DSS (or a proxy) answered something that is not JSON
        return DSSError("%s: DSS answered with a malformed body" % what)
    if isinstance(exc, requests.exceptions.RequestException):
        return DSSUnreachable("%s: HTTP error talking to DSS (%s)" % (what, exc.__class__.__name__))
    if isinstance(exc, DataikuException):
        status = getattr(_last_status, "value", None)
        message = str(exc)
        lowered = message.lower()
        if status == 401 or (status is None and "unauthorized" in lowered):
            return DSSUnauthorized("%s: %s" % (what, message), status=status)
        if status == 403 or (status is None and ("forbidden" in lowered or "not allowed" in lowered)):
            return DSSForbidden("%s: %s" % (what, message), status=status)
        if status == 404 or (status is None and "notfound" in lowered.replace(" ", "")):
            return DSSNotFound("%s: %s" % (what, message), status=status)
        return DSSError("%s: %s" % (what, message), status=status)
    return exc


@contextmanager
def calling(what):
    """The one translation point: `with dss.calling("listing webapps of project X"): client...`.

    Inside the block, an error from dataikuapi, requests or the JSON parser is raised as the typed error of
    `translate_error` (a DSSError or, for an invalid URL, a ConfigError) `from` the original; an error already
    typed passes unchanged; any other exception (one rule for the unknown) is logged with its traceback and
    raised as a DSSError naming `what`, so call sites catch only the typed errors they handle.
    """
    try:
        yield
    except ProcessTrackerError:
        raise
    except Exception as exc:  # noqa: BLE001 - translated here, once
        err = translate_error(exc, what)
        if err is exc:
            logging.getLogger(__name__).warning("%s: unexpected %s", what, exc.__class__.__name__, exc_info=True)
            err = DSSError("%s: unexpected answer from DSS (%s)" % (what, exc.__class__.__name__))
        raise err from exc
