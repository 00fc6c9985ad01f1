"""DSS cgroup paths as context: which workload and which user or project a DSS cgroup stands for, and its OOM kills.

DSS's cgroups integration (Administration > Settings > Resource control) places the processes it starts in cgroups
built from per-workload path templates, kept in `<DIP_HOME>/config/general-settings.json` under `cgroupSettings`.
The key names are not documented by Dataiku; third-party notes show (and this module assumes, parsing defensively)
`{"enabled", "cgroupsVersion", "hierarchiesMountPoint", "<workload>": {"targets": [{"cgroupPathTemplate":
"memory/DSS/${user}/mlKernels", "limits": [...]}]}, "cgroups": [{"cgroupPathTemplate": "memory/DSS", ...}]}` with
workloads such as jupyterKernels, pythonRRecipes, mlKernels, webappDevBackends, pythonMacros. A template that
does not parse is left out; a file that does not parse is a note. Nothing here is trusted for memory: a cgroup
context explains a process, it never joins it to an activity.

A template's first segment is the v1 controller when it is one (`memory/`); `${...}` variables match one path
segment: a name holding "user" gives the user, one holding "project" the project key, others go to `ids`. Values
are validated (`identifiers`). The most specific template (most literal characters) wins.

OOM kills: the kernel's counter of OOM kills in a cgroup, `oom_kill` in v2 `memory.events` and in v1
`memory.oom_control`: `cgroup_infos` gives it per DSS cgroup of a snapshot with the workload and user or project.
"""
import json
import os
import re
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Pattern, Sequence, Tuple

from . import identifiers
from .context import Context

SETTINGS_FILE = os.path.join("config", "general-settings.json")
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "cpu,cpuacct", "cpuacct,cpu", "blkio", "pids", "cpuset")
NOT_WORKLOADS = ("cgroups",)  # the parents' limits, not a workload
_WORKLOAD_RE = re.compile(r"\A[A-Za-z][A-Za-z0-9_]{0,63}\Z")
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]{0,40})\}")
_ID_VALUE_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.\-@+]{0,254}\Z")
MAX_TEMPLATES = 200


@dataclass(frozen=True)
class Template:
    workload: str
    pattern: Pattern
    variables: Tuple[str, ...]  # variable names, by group number
    specificity: int  # literal characters


@dataclass(frozen=True)
class CgroupMap:
    """One instance's cgroup templates, most specific first."""

    instance: str
    templates: Tuple[Template, ...] = ()
    version: Optional[int] = None  # 1 or 2 from cgroupsVersion, None when not given
    note: str = ""  # why there are no templates (no file, integration disabled, ...)


@dataclass(frozen=True)
class CgroupInfo:
    """A DSS cgroup of a snapshot with what its path says and its OOM kills (a series of its own)."""

    path: str
    version: int
    usage_bytes: Optional[int]
    limit_bytes: Optional[int]
    oom_kills: Optional[int]  # the kernel's oom_kill counter, None when unreadable
    workload: Optional[str] = None
    user: Optional[str] = None
    project_key: Optional[str] = None
    instance: Optional[str] = None
    ids: Mapping[str, str] = field(default_factory=dict)


def compile_template(workload: str, template: str) -> Optional[Template]:
    """A Template from a cgroupPathTemplate, None when it is not a usable path."""
    if not isinstance(template, str) or not template.strip() or len(template) > 500 or ".." in template:
        return None
    segments = [s for s in template.strip().split("/") if s]
    if segments and segments[0] in V1_CONTROLLERS:
        segments = segments[1:]
    if not segments:
        return None
    parts, variables, literal = [], [], 0
    for segment in segments:
        out, last = [], 0
        for found in _VAR_RE.finditer(segment):
            out.append(re.escape(segment[last:found.start()]))
            out.append("(?P<v%d>[^/]+)" % len(variables))
            variables.append(found.group(1))
            literal += found.start() - last
            last = found.end()
        if "$" in segment[last:]:
            return None  # an unknown placeholder form
        out.append(re.escape(segment[last:]))
        literal += len(segment) - last
        parts.append("".join(out))
    pattern = re.compile(r"\A/?%s(?:/.*)?\Z" % "/".join(parts))
    return Template(workload, pattern, tuple(variables), literal)


def parse_settings(settings, instance: str) -> CgroupMap:
    """A CgroupMap from general-settings.json's content (any JSON value; keys unverified, see the docstring)."""
    cg = settings.get("cgroupSettings") if isinstance(settings, dict) else None
    if not isinstance(cg, dict):
        return CgroupMap(instance, note="no cgroupSettings in %s" % SETTINGS_FILE)
    if cg.get("enabled") is False:
        return CgroupMap(instance, note="DSS's cgroups integration is disabled")
    version = {"CGROUPS_V1": 1, "CGROUPS_V2": 2}.get(cg.get("cgroupsVersion"))
    templates = []
    for workload, entry in cg.items():
        if workload in NOT_WORKLOADS or not isinstance(entry, dict) or not _WORKLOAD_RE.match(workload):
            continue
        targets = entry.get("targets") if isinstance(entry.get("targets"), list) else [entry]
        for target in targets[:MAX_TEMPLATES]:
            raw = target.get("cgroupPathTemplate") if isinstance(target, dict) else None
            compiled = compile_template(workload, raw) if raw is not None else None
            if compiled is not None:
                templates.append(compiled)
    templates.sort(key=lambda t: -t.specificity)
    return CgroupMap(instance, tuple(templates), version, "" if templates else "no cgroup path template")


def load_map(dip_home: str) -> CgroupMap:
    """The instance's CgroupMap; a missing or unreadable file is a note, never an error."""
    path = os.path.join(dip_home, SETTINGS_FILE)
    try:
        with open(path, "rb") as f:
            settings = json.loads(f.read(8 << 20))
    except FileNotFoundError:
        return CgroupMap(dip_home, note="no %s" % path)
    except (OSError, ValueError) as exc:
        return CgroupMap(dip_home, note="%s unreadable (%s)" % (path, exc.__class__.__name__))
    return parse_settings(settings, dip_home)


def describe(path: Optional[str], maps: Sequence[CgroupMap]) -> Optional[Context]:
    """The cgroup context of a cgroup path: the first map (pass the process's instance first) whose most
    specific matching template names it. None when no template matches."""
    if not path:
        return None
    for cmap in maps:
        for template in cmap.templates:
            found = template.pattern.match(path)
            if found is not None:
                return _context(template, found, cmap.instance)
    return None


def _context(template, found, instance):
    user = project_key = None
    ids = {}
    for index, name in enumerate(template.variables):
        value = found.group("v%d" % index)
        lowered = name.lower()
        if "user" in lowered:
            user = value if identifiers.is_valid("login", value) else None
        elif "project" in lowered:
            project_key = value if identifiers.is_valid("project_key", value) else None
        elif _ID_VALUE_RE.match(value):
            ids[re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()] = value
    return Context("cgroup", template.workload, project_key, user, ids, instance)


def maps_for(snapshot, dip_homes: Sequence[str] = ()) -> Tuple[CgroupMap, ...]:
    """The CgroupMaps of the instances running a backend in the snapshot, plus `dip_homes`."""
    homes = list(dip_homes) + sorted({p.instance for p in snapshot.processes if p.instance and p.role == "backend"})
    return tuple(load_map(home) for home in dict.fromkeys(homes))


def contexts(snapshot, maps: Sequence[CgroupMap]) -> Dict[int, Context]:
    """{pid: Context} for the DSS processes whose cgroup a template names (their own instance's map first)."""
    out, seen = {}, {}  # processes share cgroups: each (path, instance) is matched once
    for p in snapshot.processes:
        if not p.cgroup or p.role == "not_dss":
            continue
        key = (p.cgroup, p.instance)
        if key not in seen:
            seen[key] = describe(p.cgroup, sorted(maps, key=lambda m: m.instance != p.instance))
        if seen[key] is not None:
            out[p.pid] = seen[key]
    return out


def read_oom_kills(cgroup_root: str, path: str, version: int) -> Optional[int]:
    """The `oom_kill` counter of a cgroup: v2 `<root>/<path>/memory.events`, v1
    `<root>/memory/<path>/memory.oom_control`. None when unreadable or absent (kernels before 4.13 in v1)."""
    rel = path.lstrip("/")
    if version == 1:
        file_path = os.path.join(cgroup_root, "memory", rel, "memory.oom_control")
    else:
        file_path = os.path.join(cgroup_root, rel, "memory.events")
    try:
        with open(file_path, "rb") as f:
            for line in f.read(65536).splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[0] == b"oom_kill":
                    return int(parts[1])
    except (OSError, ValueError):
        return None
    return None


def cgroup_infos(snapshot, maps: Sequence[CgroupMap], cgroup_root: str = "/sys/fs/cgroup") -> Tuple[CgroupInfo, ...]:
    """One CgroupInfo per DSS cgroup of the snapshot (`snapshot.cgroups`), with its OOM kills and context."""
    out = []
    for c in snapshot.cgroups:
        ctx = describe(c.path, maps)
        out.append(CgroupInfo(
            path=c.path, version=c.version, usage_bytes=c.usage_bytes, limit_bytes=c.limit_bytes,
            oom_kills=read_oom_kills(cgroup_root, c.path, c.version),
            workload=ctx.kind if ctx else None, user=ctx.user if ctx else None,
            project_key=ctx.project_key if ctx else None, instance=ctx.instance if ctx else None,
            ids=dict(ctx.ids) if ctx else {}))
    return tuple(out)
