"""The one gate for identifiers and the one place that turns DSS- or host-provided text into safe text.

Every identifier that reaches a DSS call or a path passes `check(kind, value, param=...)` first, on every face
(webapp body, CLI option, macro config) and on values read back from DSS before they are used in a later call.
A value that fails raises `ConfigError(param, ...)` naming the parameter and what is accepted; the message shows
the bad value escaped and cut (`shown`), never raw.

Path segments are built with `segment(kind, value)`: checked, then quoted with nothing left safe (a notebook name
may hold spaces, `#`, `?`, `%`). No caller formats a raw value into a path.

Patterns are deliberately strict where DSS's own forms are known (project keys, recipe and scenario ids are
letters, digits and underscores; future, webapp and code studio ids are short alphanumeric tokens; job ids are
`Build_<names>_<timestamp>`-like; session and kernel ids are UUID-like) and only exclude what can steer a call
(slashes, dot segments, control characters, URL delimiters) where DSS allows free text (notebook names).
Where a real DSS id would fail a pattern, the activity is shown as an error row naming the field, never acted on:
the safe failure. See docs/reliability.md (threat model).
"""
import re
import unicodedata
from urllib.parse import quote

from .errors import ConfigError

__all__ = ["KINDS", "check", "is_valid", "segment", "shown", "safe_text", "check_list"]

MAX_TEXT = 200  # default bound of a shown value

# kind -> (regex, what is accepted, for messages). Every id kind is one entry: adding one is a line and a test.
_SHORT_ID = r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}"
KINDS = {
    "project_key": (r"[A-Za-z0-9_]{1,100}", "letters, digits and underscores (at most 100)"),
    "future_id": (_SHORT_ID, "letters, digits, '_', '.', '-' (at most 128, starting with a letter or digit)"),
    "job_id": (r"[A-Za-z0-9][A-Za-z0-9_.\-()+]{0,254}", "letters, digits, '_', '.', '-', '(', ')', '+' (at most 255)"),
    "session_id": (_SHORT_ID, "letters, digits, '_', '.', '-' (at most 128)"),
    "kernel_id": (r"[A-Za-z0-9][A-Za-z0-9\-]{0,127}", "letters, digits and '-' (a UUID)"),
    "webapp_id": (r"[A-Za-z0-9_\-]{1,128}", "letters, digits, '_' and '-' (at most 128)"),
    "recipe_id": (r"[A-Za-z0-9_\-]{1,200}", "letters, digits, '_' and '-' (at most 200)"),
    "scenario_id": (r"[A-Za-z0-9_\-]{1,200}", "letters, digits, '_' and '-' (at most 200)"),
    "code_studio_id": (r"[A-Za-z0-9_\-]{1,128}", "letters, digits, '_' and '-' (at most 128)"),
    "login": (r"[A-Za-z0-9_.@+\-][A-Za-z0-9_.@+\- ]{0,254}", "a DSS login (letters, digits, '_', '.', '@', '+', '-')"),
    "group": (r"[A-Za-z0-9_.@+\-][A-Za-z0-9_.@+\- ]{0,254}", "a DSS group name"),
    # free text in DSS: only what could steer a call or forge a line is refused (checked below, not by regex)
    "notebook_name": (None, "a notebook name without '/', '\\', control characters or a leading/trailing dot "
                            "segment (at most 200 characters)"),
}
_COMPILED = {k: (re.compile(r"\A(?:%s)\Z" % rx) if rx else None) for k, (rx, _) in KINDS.items()}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def _free_text_ok(value, limit=200):
    if not value or len(value) > limit or value != value.strip():
        return False
    if _CONTROL.search(value) or "/" in value or "\\" in value:
        return False
    return value not in (".", "..") and unicodedata.is_normalized("NFC", value)


def is_valid(kind, value):
    """True when `value` is a string of the form accepted for `kind` (a key of KINDS)."""
    if kind not in _COMPILED:
        raise ConfigError("kind", "unknown identifier kind %r" % (kind,))
    if not isinstance(value, str):
        return False
    regex = _COMPILED[kind]
    if regex is None:
        return _free_text_ok(value)
    if value in (".", "..") or ".." in value:
        return False
    return regex.match(value) is not None


def check(kind, value, param=None):
    """`value` if it is a valid `kind` identifier, else ConfigError naming `param` (default: the kind)."""
    if not is_valid(kind, value):
        raise ConfigError(param or kind, "not a valid %s: %s; accepted: %s"
                          % (kind.replace("_", " "), shown(value, 80), KINDS[kind][1]))
    return value


def check_list(kind, values, param):
    """A list of identifiers (macro/CLI include or exclude lists): each checked, duplicates dropped, order kept."""
    if values is None:
        return ()
    if isinstance(values, str):
        values = [v for v in re.split(r"[,\s]+", values) if v]
    try:
        items = list(values)
    except TypeError:
        raise ConfigError(param, "a list of %s values, got %s" % (kind.replace("_", " "), shown(values, 80))) from None
    out = []
    for v in items:
        v = v.strip() if isinstance(v, str) else v
        out.append(check(kind, v, param))
    return tuple(dict.fromkeys(out))


def segment(kind, value):
    """A checked identifier quoted as one URL path segment (nothing left safe)."""
    return quote(check(kind, value), safe="")


def safe_text(value, limit=MAX_TEXT):
    """Text from DSS or the host made safe for a terminal, a log line, a table cell or an HTML text node:
    control and bidi characters escaped (``\\x1b``, ``\\n``, ``\\u202e``), cut to `limit` characters with '...'.
    None stays None; other types are converted with str()."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    text = _CONTROL.sub(_escape_char, text)
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 3)] + "..."
    return text


def _escape_char(match):
    ch = match.group(0)
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    if ch in named:
        return named[ch]
    code = ord(ch)
    return "\\x%02x" % code if code < 0x100 else "\\u%04x" % code


def shown(value, limit=60):
    """A bounded, escaped repr of user or DSS input for error messages (never the raw value)."""
    text = value if isinstance(value, str) else repr(value)
    text = safe_text(text, None)
    if isinstance(value, str):
        text = "'%s'" % text
    return text if len(text) <= limit else text[: limit - 3] + "..."
