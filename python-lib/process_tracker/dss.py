"""Getting a DSSClient, inside or outside DSS, with timeouts, bounded retries of reads and typed errors.

dataikuapi sets no timeout and no retry: a hung DSS would hang a macro or the webapp forever. Every client
returned here has a transport adapter that gives each HTTP call a (connect, read) timeout, and retries
idempotent reads (GET/HEAD) with backoff on connection errors and 5xx answers. Actions (POST/PUT/DELETE) are
never retried blindly.

Errors from the client become a few typed exceptions where they enter the code (`translate_error`).
This module never imports `dataiku` at module level: the plugin code must import outside DSS too.
"""
import json
import logging
import math
import os
import threading
from contextlib import contextmanager

from .errors import (
    ConfigError,
    DSSError,
    DSSForbidden,
    DSSNotFound,
    DSSUnauthorized,
    DSSUnreachable,
    ProcessTrackerError,
)

DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_READ_TIMEOUT_S = 30.0
DEFAULT_READ_RETRIES = 2
RETRY_BACKOFF_S = 0.2
RETRY_STATUSES = (500, 502, 503, 504)
IDEMPOTENT_METHODS = frozenset(["GET", "HEAD"])
POOL_MAXSIZE = 64  # connections kept per host: the fan-out runs up to 64 concurrent calls

_last_status = threading.local()

__all__ = [
    "get_client",
    "install_timeouts",
    "translate_error",
    "client_from_settings",
]


def _truthy(value):
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")


def _read_config_file(path):
    """The real `dataiku` package's fallback outside DSS: ~/.dataiku/config.json."""
    try:
        with open(path) as f:
            conf = json.load(f)
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as e:
        raise ConfigError("config_file", "cannot read %s: %s" % (path, e.__class__.__name__)) from None
    instances = conf.get("dss_instances") or {}
    name = conf.get("default_instance") or "default"
    inst = instances.get(name) or {}
    return inst.get("url"), inst.get("api_key")


def client_from_settings(url=None, api_key=None, no_check_certificate=None, environ=None, config_file=None):
    """Resolve (url, api_key, no_check_certificate) the way the real `dataiku` package does outside DSS.

    Order: explicit arguments, then DKU_DSS_URL + DKU_API_KEY, then ~/.dataiku/config.json.
    Returns None for the URL when nothing is configured (the caller may then be inside DSS).
    """
    env = os.environ if environ is None else environ
    url = url or env.get("DKU_DSS_URL")
    api_key = api_key or env.get("DKU_API_KEY")
    if not (url and api_key):
        path = config_file or os.path.join(os.path.expanduser("~"), ".dataiku", "config.json")
        file_url, file_key = _read_config_file(path)
        url = url or file_url
        api_key = api_key or file_key
    if no_check_certificate is None:
        no_check_certificate = _truthy(env.get("DKU_NO_CHECK_CERTIFICATE"))
    if url and not api_key:
        raise ConfigError("api_key", "a DSS URL is set (%r) but no API key: set DKU_API_KEY or --api-key" % url)
    if api_key and not url:
        raise ConfigError("url", "an API key is set but no DSS URL: set DKU_DSS_URL or --url")
    if url and not url.startswith(("http://", "https://")):
        raise ConfigError("url", "the DSS URL must start with http:// or https://, got %r" % url)
    return (url.rstrip("/") if url else None), api_key, bool(no_check_certificate)


def get_client(url=None, api_key=None, no_check_certificate=None, timeout=None, read_retries=DEFAULT_READ_RETRIES):
    """The one way to get a `dataikuapi.DSSClient`.

    Outside DSS (or when a URL/key is given or set in the environment) a client is built from them; inside DSS
    `dataiku.api_client()` gives a client authenticated as the user running the macro or webapp.
    `timeout` is seconds or a (connect, read) tuple applied to every call.
    """
    resolved_url, resolved_key, insecure = client_from_settings(url, api_key, no_check_certificate)
    if resolved_url:
        import dataikuapi

        client = dataikuapi.DSSClient(resolved_url, resolved_key, no_check_certificate=insecure)
    else:
        try:
            import dataiku
        except ImportError:
            raise ConfigError(
                "url",
                "not running inside DSS and no DSS configured: set DKU_DSS_URL and DKU_API_KEY "
                "(or pass --url and --api-key)",
            ) from None
        try:
            client = dataiku.api_client()
        except Exception as exc:  # noqa: BLE001 - outside DSS the real package raises a bare Exception
            raise ConfigError(
                "url",
                "no DSS configured (%s): set DKU_DSS_URL and DKU_API_KEY (or pass --url and --api-key)"
                % exc.__class__.__name__,
            ) from None
    return install_timeouts(client, timeout=timeout, read_retries=read_retries)


def _make_adapter(timeout, read_retries):
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    retry = Retry(
        total=read_retries,
        connect=read_retries,
        read=read_retries,
        status=read_retries,
        other=0,
        backoff_factor=RETRY_BACKOFF_S,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=IDEMPOTENT_METHODS,
        raise_on_status=False,
        respect_retry_after_header=False,
    )

    class _TimeoutAdapter(HTTPAdapter):
        def send(self, request, **kwargs):
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = timeout
            response = super().send(request, **kwargs)
            _last_status.value = response.status_code
            return response

    return _TimeoutAdapter(max_retries=retry, pool_maxsize=POOL_MAXSIZE)


def install_timeouts(client, timeout=None, read_retries=DEFAULT_READ_RETRIES):
    """Give every HTTP call of `client` a timeout, and bounded retries of idempotent reads. Returns client."""
    if timeout is None:
        timeout = (DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_READ_TIMEOUT_S)
    values = timeout if isinstance(timeout, tuple) else (timeout,)
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0
                         for v in values):
        # a negative, zero, NaN or infinite timeout would fail every call obscurely, or never time out
        raise ConfigError("timeout", "must be a number of seconds > 0, got %r" % (timeout,))
    if not isinstance(timeout, tuple):
        timeout = (min(float(timeout), DEFAULT_CONNECT_TIMEOUT_S), float(timeout))
    session = getattr(client, "_session", None)
    if session is None:  # pragma: no cover - every dataikuapi client since 2.x has one
        return client
    adapter = _make_adapter(timeout, read_retries)
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
    import requests
    from dataikuapi.utils import DataikuException

    if isinstance(exc, ProcessTrackerError):  # already typed (a ConfigError is also a ValueError: not a body)
        return exc
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
