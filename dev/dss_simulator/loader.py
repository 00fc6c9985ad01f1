"""Loading an instance description (JSON, schema in dev/README.md) into a `State`.

Times are relative to the simulator clock at load time: `startedAgo`, `idleFor`, `endedAgo`, `endsIn` take seconds
or a duration string ("250ms", "90s", "5m", "3h", "9d", "2w"); `abortDelay` also takes "never". Wherever a pid goes,
`{"fleet": "<name>"}` is replaced by that fleet process's pid (the field is dropped when the name is not given).
A bad value raises ValueError naming the object and the field.
"""
import re
import uuid

from .state import FINISHED, Fault, Group, Task, User

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value, what, allow_never=False):
    """Seconds (float) from a number or a string like "3h"; None for "never" when allowed."""
    if allow_never and (value is None or value == "never"):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    m = _DURATION.match(value) if isinstance(value, str) else None
    if not m:
        accepted = "seconds or a duration like '90s', '5m', '3h', '9d'" + (" or 'never'" if allow_never else "")
        raise ValueError("%s: bad duration %r (expected %s)" % (what, value, accepted))
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def resolve_fleet(obj, pids):
    """Replace every {"fleet": name} value by pids[name]; drop the key when the name is not in pids."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if isinstance(v, dict) and list(v) == ["fleet"]:
                if v["fleet"] in pids:
                    out[k] = int(pids[v["fleet"]])
                continue
            out[k] = resolve_fleet(v, pids)
        return out
    if isinstance(obj, list):
        return [resolve_fleet(x, pids) for x in obj]
    return obj


def _uuid():
    return str(uuid.uuid4())


class _Loader:
    def __init__(self, state):
        self.state = state
        self.now = state.now()

    def ago(self, spec, name, what, default=0):
        return self.now - parse_duration(spec.get(name, default), "%s.%s" % (what, name))

    def user(self, login, what):
        if login not in self.state.users:
            raise ValueError("%s: unknown user %r (add it to users)" % (what, login))
        return login

    def task(self, kind, task_id, project_key, owner, spec, data, what):
        if (kind, task_id) in self.state.tasks:
            raise ValueError("%s: duplicate %s id %r" % (what, kind, task_id))
        t = Task(kind, task_id, project_key, self.user(owner, what), self.ago(spec, "startedAgo", what), data,
                 end_state=spec.get("endState", "DONE"))
        if "endsIn" in spec:
            t.ends_at = self.now + parse_duration(spec["endsIn"], what + ".endsIn")
        if "endedAgo" in spec:
            t.ends_at = self.ago(spec, "endedAgo", what)
        if "abortDelay" in spec:
            t.abort_delay = parse_duration(spec["abortDelay"], what + ".abortDelay", allow_never=True)
        if t.end_state not in FINISHED:
            raise ValueError("%s.endState: %r is not one of %s" % (what, t.end_state, ", ".join(FINISHED)))
        self.state.tasks[(kind, task_id)] = t
        return t

    def load(self, inst):
        s = self.state
        if "dssVersion" in inst:
            s.dss_version = inst["dssVersion"]
        if "dataDirPath" in inst:
            s.data_dir = inst["dataDirPath"]
        s.node.update(inst.get("node", {}))
        if "abortDelay" in inst:
            s.abort_delay = parse_duration(inst["abortDelay"], "abortDelay", allow_never=True)
        for g in inst.get("groups", []):
            s.groups[g["name"]] = Group(g["name"], bool(g.get("admin", False)), g.get("description", ""))
        for u in inst.get("users", []):
            s.users[u["login"]] = User(u["login"], u.get("displayName", u["login"]), list(u.get("groups", [])),
                                       list(u.get("apiKeys", [])), u.get("email"), u.get("profile", "DATA_SCIENTIST"))
        for p in inst.get("projects", []):
            self.project(p)
        for f in inst.get("futures", []):
            self.future(f)
        faults = inst.get("faults", {})
        if "seed" in faults:
            s.rng.seed(faults["seed"])
        if "hangSeconds" in faults:
            s.hang_seconds = parse_duration(faults["hangSeconds"], "faults.hangSeconds")
        for r in faults.get("routes", []):
            s.faults.append(fault_from_spec(r))
        s.failing_projects.update(faults.get("failingProjects", []))

    def future(self, f, project_key=None, data=None):
        job_id = f.get("jobId") or uuid.uuid4().hex[:8]
        targets = f.get("targets", [])
        project_key = project_key or f.get("projectKey") or (targets[0].get("projectKey") if targets else None)
        data = data or {k: f[k] for k in ("displayName", "action", "targets", "extras", "progress", "result", "error",
                                           "raw") if k in f}
        return self.task("future", job_id, project_key, f["owner"], f, data, "futures[%s]" % job_id)

    def project(self, p):
        s, pk = self.state, p["projectKey"]
        if pk not in s.projects:
            s.projects[pk] = {"projectKey": pk, "name": p.get("name", pk), "owner": p.get("owner", "admin"),
                              "shortDesc": p.get("shortDesc", ""), "tags": p.get("tags", [])}
        what = "projects[%s]" % pk
        for nb in p.get("notebooks", []):
            self.notebook(pk, nb, what)
        for j in p.get("jobs", []):
            self.job(pk, j, what)
        for sc in p.get("scenarios", []):
            self.scenario(pk, sc)
        for w in p.get("webapps", []):
            self.webapp(pk, w, what)
        for ca in p.get("continuousActivities", []):
            self.continuous_activity(pk, ca, what)
        for cs in p.get("codeStudios", []):
            self.code_studio(pk, cs, what)

    def notebook(self, pk, nb, what):
        s = self.state
        s.notebooks[(pk, nb["name"])] = {"language": nb.get("language", "python"), "tags": nb.get("tags", []),
                                          "kernelSpec": nb.get("kernelSpec", {"name": "py-dku-venv-python3",
                                                                              "display_name": "Python 3",
                                                                              "language": "python"})}
        for se in nb.get("sessions", []):
            sid = se.get("sessionId") or _uuid()
            data = {"notebook": nb["name"], "kernelId": se.get("kernelId") or _uuid(),
                    "state": se.get("state", "idle"), "connections": int(se.get("connections", 0)),
                    "unixOwner": se.get("unixOwner", "dataiku"), "raw": se.get("raw", {})}
            if se.get("kernelPid") is not None:
                data["kernelPid"] = int(se["kernelPid"])
            t = self.task("session", sid, pk, se["creator"], se, data, "%s.sessions[%s]" % (what, sid))
            data["lastActivity"] = self.ago(se, "idleFor", what, default=self.now - t.started_at)

    def job(self, pk, j, what):
        state = j.get("state", "RUNNING")
        data = {k: j[k] for k in ("name", "type", "kernelPid", "scenarioId", "scenarioRunId", "raw") if k in j}
        spec = dict(j)
        if state in FINISHED:
            spec.setdefault("endedAgo", 0)
            spec["endState"] = state
        else:
            data["state"] = state
        self.task("job", j["id"], pk, j["initiator"], spec, data, "%s.jobs[%s]" % (what, j["id"]))

    def scenario(self, pk, sc):
        s = self.state
        definition = {k: v for k, v in sc.items() if k not in ("running", "script")}
        definition.setdefault("name", sc["id"])
        definition.setdefault("type", "step_based")
        definition.setdefault("active", False)
        definition.setdefault("triggers", [])
        definition.setdefault("reporters", [])
        definition.setdefault("params", {"steps": []} if definition["type"] == "step_based" else {})
        definition["projectKey"] = pk
        s.scenarios[(pk, sc["id"])] = definition
        if "script" in sc:
            s.scenario_scripts[(pk, sc["id"])] = sc["script"]
        run = sc.get("running")
        if run:
            data = {"displayName": "Scenario %s" % definition["name"], "scenario": sc["id"],
                    "targets": [{"objectType": "SCENARIO", "projectKey": pk, "objectId": sc["id"]}],
                    "extras": {"scenarioRunId": run.get("runId", "run-%s" % sc["id"].lower())}}
            self.future(dict(run, owner=run["by"]), pk, data)

    def webapp(self, pk, w, what):
        s = self.state
        s.webapps[(pk, w["id"])] = {"name": w.get("name", w["id"]), "type": w.get("type", "STANDARD"),
                                    "tags": w.get("tags", [])}
        b = w.get("backend")
        if b:
            extras = {k: int(b[k]) for k in ("pid", "port") if b.get(k) is not None}
            data = {"futureId": b.get("futureId") or uuid.uuid4().hex[:8],
                    "displayName": "Webapp backend %s" % w.get("name", w["id"]), "extras": extras}
            self.task("webapp", w["id"], pk, b.get("owner", s.projects[pk]["owner"]), b, data,
                      "%s.webapps[%s]" % (what, w["id"]))

    def continuous_activity(self, pk, ca, what):
        s = self.state
        rid = ca["recipeId"]
        s.continuous_activities[(pk, rid)] = {"recipeType": ca.get("recipeType", "cpython")}
        if ca.get("state", "STARTED") == "STARTED" or "endedAgo" in ca:
            data = {"futureId": ca.get("futureId") or uuid.uuid4().hex[:8],
                    "displayName": "Continuous activity %s" % rid}
            self.task("continuous_activity", rid, pk, ca.get("owner", s.projects[pk]["owner"]), ca, data,
                      "%s.continuousActivities[%s]" % (what, rid))

    def code_studio(self, pk, cs, what):
        s = self.state
        s.code_studios[(pk, cs["id"])] = {"name": cs.get("name", cs["id"]), "owner": cs.get("owner"),
                                          "templateId": cs.get("templateId", "vscode"),
                                          "desc": {"label": cs.get("templateLabel", "VS Code")}}
        if cs.get("state", "RUNNING") == "RUNNING" or "endedAgo" in cs:
            self.task("code_studio", cs["id"], pk, cs["owner"], cs, {}, "%s.codeStudios[%s]" % (what, cs["id"]))


def fault_from_spec(r):
    """A Fault from its instance JSON form: {path, method, latency, errorRate, hang, malformed}."""
    return Fault(path=r.get("path", ".*"), method=r.get("method"),
                 latency_seconds=parse_duration(r.get("latency", 0), "faults.routes.latency"),
                 error_rate=float(r.get("errorRate", 0.0)), hang=bool(r.get("hang", False)),
                 malformed=bool(r.get("malformed", False)))


def load(state, instance, fleet_pids=None):
    """Add everything in `instance` (a dict) to `state`; may be called again to add more objects."""
    inst = resolve_fleet(instance or {}, dict(fleet_pids or {}))
    with state.lock:
        _Loader(state).load(inst)
