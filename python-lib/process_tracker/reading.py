"""The one layer every value read from DSS goes through: types, finite numbers, plausible ranges, valid ids.

`Item(obj, label)` wraps one JSON object DSS answered (a future, a session, a job list item...). Its readers
return a checked value, None when the field is absent (or null), and raise `BadValue` when the field is present
but unusable (a string where a number goes, NaN or 1e999, a start time in the year 5000, a pid of 2**40, an id
that fails `identifiers`). The lister turns a `BadValue` into an error row naming the item and the field; the
other items still list and can be acted on. Display-only values (progress states) are filtered, never fatal.

`answer_list` / `answer_object` check the shape of a whole answer (a list of objects, an object): anything else
is a `BadValue` for the call (an error row for that call).
"""
import math

from . import identifiers
from .errors import DSSError

__all__ = ["BadValue", "Item", "answer_list", "answer_object"]

MIN_EPOCH_MS = 946_684_800_000  # 2000-01-01
MAX_EPOCH_MS = 4_102_444_800_000  # 2100-01-01
MAX_DURATION_MS = 100 * 366 * 86_400_000  # a century
MAX_PID = 2 ** 22  # Linux's pid_max limit (PID_MAX_LIMIT on 64-bit)
MAX_COUNT = 2 ** 31


class BadValue(DSSError):
    """DSS answered a value the plugin cannot use. `item` names the object, `field` the field (dotted path)."""

    def __init__(self, item, field, why):
        self.item = item
        self.field = field
        super().__init__("%s: field %s %s" % (item, field, why))


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def answer_list(value, what):
    """A whole answer that must be a list; its entries that are not objects cannot be activities: skipped."""
    if not isinstance(value, list):
        raise DSSError("%s: DSS answered %s instead of a list" % (what, _type_name(value)))
    return [v for v in value if isinstance(v, dict)]


def answer_object(value, what):
    if not isinstance(value, dict):
        raise DSSError("%s: DSS answered %s instead of an object" % (what, _type_name(value)))
    return value


def _type_name(value):
    return {dict: "an object", list: "a list", str: "a string", type(None): "null", bool: "a boolean"}.get(
        type(value), "a number" if _number(value) else type(value).__name__)


class Item:
    """One JSON object from DSS, read field by field (dotted names reach into nested objects)."""

    def __init__(self, obj, label, prefix=""):
        self.obj = obj if isinstance(obj, dict) else {}
        self.label = label
        self.prefix = prefix  # the path of this object inside the answer, for error messages

    def raw(self, name):
        """The value at a dotted path (a number reaches into a list), None when any step is missing."""
        value = self.obj
        for part in name.split("."):
            if isinstance(value, list) and part.isdigit():
                value = value[int(part)] if int(part) < len(value) else None
            elif isinstance(value, dict):
                value = value.get(part)
            else:
                return None
        return value

    def bad(self, name, why):
        return BadValue(self.label, self.prefix + name, why)

    def sub(self, name):
        """A nested object as an Item (empty when absent; BadValue when it is not an object)."""
        value = self.raw(name)
        if value is not None and not isinstance(value, dict):
            raise self.bad(name, "is %s, not an object" % _type_name(value))
        return Item(value or {}, self.label, self.prefix + name + ".")

    def text(self, name, limit=1000):
        """A non-empty string, or None (absent, null or empty)."""
        value = self.raw(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise self.bad(name, "is %s, not a string" % _type_name(value))
        if len(value) > limit:
            raise self.bad(name, "is longer than %d characters" % limit)
        return value

    def ident(self, kind, name):
        """An identifier of `kind` (identifiers.KINDS), or None when absent; BadValue when invalid."""
        value = self.raw(name)
        if value is None or value == "":
            return None
        if not identifiers.is_valid(kind, value):
            raise self.bad(name, "is not a valid %s: %s" % (kind.replace("_", " "), identifiers.shown(value, 80)))
        return value

    def flag(self, name):
        value = self.raw(name)
        if value is None or isinstance(value, bool):
            return value
        raise self.bad(name, "is %s, not a boolean" % _type_name(value))

    def _finite(self, name):
        value = self.raw(name)
        if value is None:
            return None
        if not _number(value):
            raise self.bad(name, "is %s, not a number" % _type_name(value))
        if not math.isfinite(value):
            raise self.bad(name, "is not a finite number")
        return value

    def epoch(self, name):
        """Epoch milliseconds -> epoch seconds; None when absent or 0 (DSS's "not set"); BadValue outside 2000-2100."""
        value = self._finite(name)
        if not value:
            return None
        if not MIN_EPOCH_MS <= value <= MAX_EPOCH_MS:
            raise self.bad(name, "is not a time between 2000 and 2100 (epoch ms): %r" % (value,))
        return value / 1000.0

    def duration(self, name):
        """Milliseconds -> seconds; None when absent; BadValue when negative or over a century."""
        value = self._finite(name)
        if value is None:
            return None
        if not 0 <= value <= MAX_DURATION_MS:
            raise self.bad(name, "is not a plausible duration (ms): %r" % (value,))
        return value / 1000.0

    def pid(self, name):
        value = self._integer(name)
        if value is not None and not 1 <= value <= MAX_PID:
            raise self.bad(name, "is not a process id (1 to %d): %r" % (MAX_PID, value))
        return value

    def count(self, name):
        value = self._integer(name)
        if value is not None and not 0 <= value <= MAX_COUNT:
            raise self.bad(name, "is not a plausible count: %r" % (value,))
        return value

    def port(self, name):
        value = self._integer(name)
        if value is not None and not 1 <= value <= 65535:
            raise self.bad(name, "is not a port (1 to 65535): %r" % (value,))
        return value

    def _integer(self, name):
        value = self._finite(name)
        if value is None:
            return None
        if value != int(value):
            raise self.bad(name, "is not a whole number: %r" % (value,))
        return int(value)

    def progress(self, name="progress.states"):
        """Progress states [{name, cur, target, unit}] for display: odd entries and values are dropped."""
        states = self.raw(name)
        out = []
        for s in states if isinstance(states, list) else ():
            if not isinstance(s, dict):
                continue
            kept = {}
            for key in ("name", "unit"):
                if isinstance(s.get(key), str):
                    kept[key] = s[key][:200]
            for key in ("cur", "target"):
                if _number(s.get(key)) and math.isfinite(s[key]):
                    kept[key] = s[key]
            out.append(kept)
        return out
