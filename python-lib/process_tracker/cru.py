"""DSS's compute-resource-usage (CRU) events, read from each instance's audit log: what a local process is, without
the API (dss-reference.md section 4; DSS documentation "Default storage of audit trail" and "Compute resource
usage reporting").

DSS records every compute resource it uses as a CRU item and writes its start, update and complete events to the
audit log, by default `<DIP_HOME>/run/audit/`: several files rotated at 100 MB (up to 20 kept), one JSON record per
line. Only the message is documented (`{"msgType": "compute-resource-usage-start|-update|-complete",
"computeResourceUsage": {"id", "type", "startTime" ms, "context": {...}, "localProcess": {"pid", ...}}}`): the
envelope around it is not, so the message is accepted at the top level of a line or nested in it (a few levels).

`AuditReader` tails every file of each audit folder from a remembered position per file (device and inode,
offset, and the file's first bytes to tell a reused inode): a rotated file (renamed) is read to its end under its
new name, a new file from its start, a truncated or replaced one again from its start. Lines longer than
`max_line_bytes` are skipped whole (counted); lines it parses and that do not parse are counted. It keeps the
items of LOCAL_PROCESS type whose pid is alive (checked against the snapshot, or /proc), drops an item on its
complete event, and forgets items whose pid is gone: its memory is bounded by the live processes (and `max_items`).
Cost: new data is searched in bulk (C speed) for the pids it names and for complete events; only the lines of live
pids without a known item and of complete events are parsed, so the updates of known items (most of DSS's traffic)
and the events of dead pids cost a pass of a regular expression, not a JSON parse (bench/cru.py).
Audit folders are trusted only when no one else can write them: not world-writable, owned by the unix user of the
instance's backend when the instance was found from its processes; symbolic links in them are not followed.

Its first poll of a folder reads the last `backfill_bytes` of the newest files only (DSS repeats an item's context
in every update event; a long-lived item whose last event is older is not known until its next update).

The join (`contexts(snapshot)`): a process gets an item's context when the item has the process's pid, started
within `start_tolerance_seconds` of the process, and has not completed: a pid reused by a new process does not
join (the stale item is dropped; the new process's item is learnt from its next event). One item is kept per pid:
if DSS reports several live items for one process, the context is the first one learnt (unconfirmed whether it
does, e.g. for activities run inside a JEK). Context values are validated (`identifiers`) where they enter; an invalid one is left out.
An unreadable folder is a note (`notes`), never an error.
"""
import json
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Set, Tuple

from . import identifiers
from .context import Context

MARK = b"compute-resource-usage-"  # in every CRU event's msgType
MSG_PREFIX = "compute-resource-usage-"
PHASES = ("start", "update", "complete")
AUDIT_SUBDIR = os.path.join("run", "audit")
_PID_RE = re.compile(rb'"pid"\s*:\s*(\d+)')
COMPLETE_MARK = b'compute-resource-usage-complete"'
_KIND_RE = re.compile(r"\A[A-Z][A-Z0-9_]{0,63}\Z")
_ID_KEY_RE = re.compile(r"\A[a-z][A-Za-z0-9]{0,40}Id\Z")
_ID_VALUE_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.\-()+@]{0,254}\Z")
_ID_CHECKS = {"job_id": "job_id", "webapp_id": "webapp_id", "recipe_id": "recipe_id", "scenario_id": "scenario_id"}
MAX_NESTING = 4


@dataclass(frozen=True)
class CruItem:
    """One live LOCAL_PROCESS item, as its latest event gave it."""

    item_id: str
    pid: int
    started_at: float  # epoch seconds (DSS gives ms)
    context: Context
    rss_anon_bytes: Optional[int] = None  # the item's rssAnonMB, when given
    seen_at: float = 0.0  # the poll that last saw an event of it (reader's clock, epoch s)


@dataclass
class ReaderStats:
    """Counters since the reader was made (one reader per sampler or command)."""

    events: int = 0  # CRU events of LOCAL_PROCESS items kept or applied
    parsed: int = 0  # lines parsed as JSON (starts, completes, events of live pids without a known item)
    malformed: int = 0  # CRU-looking lines that did not parse or had no usable message
    oversized: int = 0  # lines longer than max_line_bytes (skipped)
    not_live: int = 0  # events of pids not alive (ignored)
    rotations: int = 0  # files found renamed, replaced or truncated
    bytes_read: int = 0


@dataclass
class _FileState:
    offset: int
    head: bytes  # the file's first bytes when first seen: a reused inode holds other bytes
    partial: bytes = b""  # an incomplete last line, kept for the next poll
    skipping: bool = False  # inside an oversized line: drop bytes until the next newline


@dataclass
class _Folder:
    files: Dict[Tuple[int, int], _FileState] = field(default_factory=dict)
    primed: bool = False


def _message(record, depth=0):
    """The CRU message in a parsed line: the dict holding msgType compute-resource-usage-* and
    computeResourceUsage, at the top level or nested up to MAX_NESTING levels. None when absent."""
    if isinstance(record, dict):
        msg_type = record.get("msgType")
        if isinstance(msg_type, str) and msg_type.startswith(MSG_PREFIX) and isinstance(
                record.get("computeResourceUsage"), dict):
            return record
        values = record.values()
    elif isinstance(record, list):
        values = record
    else:
        return None
    if depth >= MAX_NESTING:
        return None
    for value in values:
        if isinstance(value, (dict, list)):
            found = _message(value, depth + 1)
            if found is not None:
                return found
    return None


def _snake(key):
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower()


def _valid(kind, value):
    return isinstance(value, str) and identifiers.is_valid(kind, value)


CONTEXT_CACHE_SIZE = 4096


def parse_context(raw, instance=None, cache: Optional[Dict[tuple, Context]] = None) -> Context:
    """A Context from a CRU item's `context` dict: type, projectKey, authIdentifier (else initiator), and every
    `<name>Id` string as `<name>_id`. Invalid values are left out. `cache`: a dict kept by the caller (the same
    context comes in every event of an item: validated once)."""
    raw = raw if isinstance(raw, dict) else {}
    if cache is None:
        return _parse_context(raw, instance)
    key = (instance,) + tuple(sorted((k, v) for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)))
    cached = cache.get(key)
    if cached is None:
        if len(cache) >= CONTEXT_CACHE_SIZE:
            cache.clear()
        cached = cache[key] = _parse_context(raw, instance)
    return cached


def _parse_context(raw, instance):
    kind = raw.get("type") if isinstance(raw.get("type"), str) and _KIND_RE.match(raw["type"]) else None
    project_key = raw.get("projectKey") if _valid("project_key", raw.get("projectKey")) else None
    user = next((raw[k] for k in ("authIdentifier", "initiator") if _valid("login", raw.get(k))), None)
    ids = {}
    for key, value in raw.items():
        if not (isinstance(key, str) and _ID_KEY_RE.match(key) and isinstance(value, str)):
            continue
        name = _snake(key)
        check = _ID_CHECKS.get(name)
        ok = identifiers.is_valid(check, value) if check else (_ID_VALUE_RE.match(value) and ".." not in value)
        if ok:
            ids[name] = value
    return Context("cru", kind, project_key, user, ids, instance)


def parse_event(line: bytes, instance=None, cache: Optional[Dict[tuple, Context]] = None):
    """(phase, CruItem) for a CRU event of a LOCAL_PROCESS item, ("other", None) for another record or item type,
    None when the line looks like CRU but does not parse into a usable event."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    msg = _message(record)
    if msg is None:
        return ("other", None) if isinstance(record, (dict, list)) else None
    phase = msg["msgType"][len(MSG_PREFIX):]
    cru = msg["computeResourceUsage"]
    if phase not in PHASES:
        return None
    if cru.get("type") != "LOCAL_PROCESS":
        return ("other", None)
    local = cru.get("localProcess") if isinstance(cru.get("localProcess"), dict) else {}
    pid, start_ms, item_id = local.get("pid"), cru.get("startTime"), cru.get("id")
    if not (isinstance(pid, int) and pid > 0 and isinstance(start_ms, (int, float)) and item_id is not None):
        return None
    anon = local.get("rssAnonMB")
    item = CruItem(str(item_id)[:128], pid, start_ms / 1000.0, parse_context(cru.get("context"), instance, cache),
                   int(anon * 1024 * 1024) if isinstance(anon, (int, float)) else None)
    return phase, item


def _proc_alive(pid):
    return os.path.exists("/proc/%d" % pid)


class AuditReader:
    """Tails the audit folders of DSS instances and keeps their live LOCAL_PROCESS CRU items. See the module
    docstring. Not thread-safe: one reader per sampler (or per command run)."""

    def __init__(self, dip_homes: Iterable[str] = (), backfill_bytes: int = 32 << 20, max_line_bytes: int = 1 << 20,
                 max_bytes_per_poll: int = 256 << 20, max_items: int = 20000, start_tolerance_seconds: float = 5.0,
                 audit_dir=None, clock=None):
        """`dip_homes`: instances always read (others are added as `contexts(snapshot)` meets them).
        `audit_dir`: `f(dip_home) -> folder` (default `<DIP_HOME>/run/audit`). `clock`: epoch seconds."""
        import time

        self.dip_homes: List[str] = list(dict.fromkeys(dip_homes))
        self.backfill_bytes = backfill_bytes
        self.max_line_bytes = max_line_bytes
        self.max_bytes_per_poll = max_bytes_per_poll
        self.max_items = max_items
        self.start_tolerance_seconds = start_tolerance_seconds
        self._audit_dir = audit_dir or (lambda home: os.path.join(home, AUDIT_SUBDIR))
        self._clock = clock or time.time
        self._folders: Dict[str, _Folder] = {}
        self.items: Dict[int, CruItem] = {}  # pid -> its live item
        self.stats = ReaderStats()
        self.notes: Dict[str, str] = {}  # dip_home -> why its audit log could not be read (cleared once it can)
        self._context_cache: Dict[tuple, Context] = {}
        self._owners: Dict[str, Optional[str]] = {}  # dip_home -> the unix user that must own its audit folder

    # -- reading ----------------------------------------------------------------------------------------------

    def poll(self, live: Optional[Set[int]] = None, dip_homes: Mapping[str, Optional[str]] = None) -> None:
        """Read what was appended to the audit logs since the last poll. `live`: the pids alive now (default:
        /proc is checked per event); items of other pids are forgotten. `dip_homes`: {instance: the unix user of
        its backend} found on the host: its audit folder is read only when that user owns it."""
        for home, owner in (dip_homes or {}).items():
            if home and home not in self.dip_homes:
                self.dip_homes.append(home)
                self._owners[home] = owner
        budget = [self.max_bytes_per_poll]
        alive = (lambda pid: pid in live) if live is not None else _proc_alive
        for home in self.dip_homes:
            self._poll_folder(home, alive, budget)
        if live is not None:
            for pid in [pid for pid in self.items if pid not in live]:
                del self.items[pid]

    def _poll_folder(self, home, alive, budget):
        folder_path = self._audit_dir(home)
        folder = self._folders.setdefault(home, _Folder())
        try:
            names = self._trusted_listing(home, folder_path)
        except FileNotFoundError:
            self.notes[home] = "no audit log folder at %s: no CRU context for this instance" % folder_path
            return
        except OSError as exc:
            self.notes[home] = "audit log folder %s unreadable (%s): no CRU context for this instance" % (
                folder_path, exc.strerror or exc.__class__.__name__)
            return
        if names is None:
            return
        self.notes.pop(home, None)
        files = []
        for name in names:
            path = os.path.join(folder_path, name)
            try:
                st = os.lstat(path)  # a symbolic link is not followed
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                files.append((st.st_mtime, (st.st_dev, st.st_ino), st.st_size, path))
        files.sort()  # oldest first: events are applied in the order DSS wrote them
        if not folder.primed:
            self._prime(folder, files)
        present = {f[1] for f in files}
        for key in [k for k in folder.files if k not in present]:
            del folder.files[key]  # deleted (rotated out)
        for _mtime, key, size, path in files:
            if budget[0] <= 0:
                break
            self._read_file(home, folder, key, size, path, alive, budget)

    def _trusted_listing(self, home, folder_path):
        """The folder's names, or None (with a note) when others could have written it: world-writable, or not
        owned by the unix user of the instance's backend (an invented instance's folder is its maker's)."""
        st = os.stat(folder_path)
        owner = self._owners.get(home)
        if st.st_mode & 0o002 or (owner is not None and _user_name(st.st_uid) != owner):
            self.notes[home] = "audit log folder %s is writable by others or not owned by %s: not read" % (
                folder_path, owner or "the DSS unix user")
            return None
        return os.listdir(folder_path)

    def _prime(self, folder, files):
        """First poll: remember every file at its end, except the last `backfill_bytes` of the newest ones."""
        left = self.backfill_bytes
        for _mtime, key, size, path in reversed(files):
            start = max(size - left, 0)
            left -= size - start
            folder.files[key] = _FileState(start, _head(path), skipping=start > 0 and not _after_newline(path, start))
        folder.primed = True

    def _read_file(self, home, folder, key, size, path, alive, budget):
        state = folder.files.get(key)
        if state is not None and size > state.offset and not _head(path).startswith(state.head):
            state = None  # the inode now holds another file
            self.stats.rotations += 1
        elif state is not None and size < state.offset:
            state = None  # truncated
            self.stats.rotations += 1
        if state is None:
            state = folder.files[key] = _FileState(0, _head(path))
        if size <= state.offset:
            return
        try:
            with open(path, "rb") as f:
                f.seek(state.offset)
                data = f.read(min(size - state.offset, budget[0]))
        except OSError as exc:
            self.notes[home] = "audit log %s unreadable (%s)" % (path, exc.strerror or exc.__class__.__name__)
            return
        if not state.head and state.offset == 0:
            state.head = data[:HEAD_BYTES]
        budget[0] -= len(data)
        state.offset += len(data)
        self.stats.bytes_read += len(data)
        self._consume(home, state, data, alive)

    def _consume(self, home, state, data, alive):
        buf = state.partial + data
        state.partial = b""
        if state.skipping:
            end = buf.find(b"\n")
            if end < 0:
                return
            buf, state.skipping = buf[end + 1:], False
        end = buf.rfind(b"\n")
        state.partial = buf[end + 1:]
        if len(state.partial) > self.max_line_bytes:
            state.partial, state.skipping = b"", True
            self.stats.oversized += 1
        if end >= 0:
            self._lines(buf, end + 1, home, alive)

    def _lines(self, chunk, size, home, alive):
        """The complete lines of `chunk[:size]` (a newline ends it), in bulk, at C speed: one search finds the
        complete events, one regular expression lists the pids the chunk names. Parsed: the completes of kept
        items (in file order), and for each live pid without a known item its events from the latest back, until
        one of an item not completed since (then the item is live) or the first line. The updates of known items (most of DSS's traffic) and the events of
        dead pids never are. A start of a new item for a pid already known (reused) is learnt from the item's
        next event, once `match` has dropped the stale item."""
        items, completes, find = self.items, [], chunk.find
        i = find(COMPLETE_MARK, 0, size)
        while i >= 0:
            completes.append(chunk.rfind(b"\n", 0, i) + 1)
            i = find(COMPLETE_MARK, i + 1, size)
        unknown = {pid for pid in {int(p) for p in set(_PID_RE.findall(chunk, 0, size))}
                   if pid not in items and alive(pid)}
        lines_of = {}
        if unknown:  # their lines, in one more pass
            for found in _PID_RE.finditer(chunk, 0, size):
                pid = int(found.group(1))
                if pid in unknown:
                    lines_of.setdefault(pid, []).append(chunk.rfind(b"\n", 0, found.start()) + 1)
        for start in sorted(set(completes)):
            self._complete(chunk[start:find(b"\n", start)], home, alive)
        for starts in lines_of.values():
            ended = set()
            for start in reversed(starts):  # the latest event of an item of the pid not completed since decides
                event = self._event(chunk[start:find(b"\n", start)], home)
                if event is None:
                    continue
                phase, item = event
                if phase == "complete":
                    ended.add(item.item_id)
                elif item.item_id not in ended:
                    self._apply(phase, item, alive)
                    break

    def _complete(self, line, home, alive):
        """A complete event: parsed only when it may end the item kept for its pid."""
        found = _PID_RE.search(line)
        current = self.items.get(int(found.group(1))) if found is not None else None
        if current is None or current.item_id.encode("utf-8", "replace") not in line:
            return  # the end of an item not kept: nothing to drop
        event = self._event(line, home)
        if event is not None:
            self._apply(event[0], event[1], alive)

    def _event(self, line, home):
        """(phase, CruItem) of a CRU event line of a LOCAL_PROCESS item, None otherwise (oversized and malformed
        lines counted)."""
        if len(line) > self.max_line_bytes:
            self.stats.oversized += 1
            return None
        if MARK not in line or b"LOCAL_PROCESS" not in line:
            return None
        self.stats.parsed += 1
        parsed = parse_event(line, home, self._context_cache)
        if parsed is None:
            self.stats.malformed += 1
            return None
        return parsed if parsed[1] is not None else None

    def _apply(self, phase, item, alive):
        current = self.items.get(item.pid)
        self.stats.events += 1
        if phase == "complete":
            if current is not None and current.item_id == item.item_id:
                del self.items[item.pid]
            return
        if not alive(item.pid):
            self.stats.not_live += 1
            return
        if current is None and len(self.items) >= self.max_items:
            oldest = min(self.items.values(), key=lambda i: i.seen_at)
            del self.items[oldest.pid]
        self.items[item.pid] = CruItem(item.item_id, item.pid, item.started_at, item.context, item.rss_anon_bytes,
                                       self._clock())

    # -- the join ---------------------------------------------------------------------------------------------

    def contexts(self, snapshot) -> Dict[int, Context]:
        """Poll (the snapshot's pids are the live ones; its instances are read too), then {pid: Context} for the
        processes whose pid and start time match a live item (see the module docstring)."""
        live = {p.pid for p in snapshot.processes if not p.zombie}
        self.poll(live, {p.instance: p.user for p in snapshot.processes if p.instance and p.role == "backend"})
        return self.match(snapshot.processes)

    def match(self, processes) -> Dict[int, Context]:
        """{pid: Context} for the processes whose pid and start time match a live item. An item whose pid now
        belongs to a process started at another time is stale (the pid was reused): it is dropped."""
        out = {}
        for p in processes:
            item = self.items.get(p.pid)
            if item is None:
                continue
            if abs(item.started_at - p.created_at) <= self.start_tolerance_seconds:
                out[p.pid] = item.context
            else:
                del self.items[p.pid]
        return out


HEAD_BYTES = 256


def _user_name(uid):
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _head(path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(HEAD_BYTES)
    except OSError:
        return b""


def _after_newline(path, offset) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(offset - 1)
            return f.read(1) == b"\n"
    except OSError:
        return False
