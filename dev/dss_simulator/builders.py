"""Build instance descriptions (plain dicts, the dev/README.md schema) in Python, for tests.

    inst = instance(projects=[project("CHURN", notebooks=[notebook("explore", [session("alice", idle_for="3h")])])])

Every builder returns a dict; extra keyword arguments are copied into it as is (camelCase schema names).
The default users and keys: admin (group administrators, admin, key "admin-key"), alice and bob (group
data_scientists, keys "alice-key", "bob-key"), ops (group ops_team, key "ops-key").
"""
import json
import os

DEMO_INSTANCE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "instances", "demo.json")


def load_demo():
    """The demo instance (dev/instances/demo.json) as a dict."""
    with open(DEMO_INSTANCE) as f:
        return json.load(f)


def default_groups():
    return [{"name": "administrators", "admin": True, "description": "DSS administrators"},
            {"name": "data_scientists", "admin": False, "description": "Data scientists"},
            {"name": "ops_team", "admin": False, "description": "Operations (allowed to act in the monitoring webapp)"}]


def user(login, groups, display_name=None, keys=None, **extra):
    return dict({"login": login, "displayName": display_name or login.capitalize(), "groups": list(groups),
                 "apiKeys": list(keys if keys is not None else ["%s-key" % login])}, **extra)


def default_users():
    return [user("admin", ["administrators"], "Admin"), user("alice", ["data_scientists"]),
            user("bob", ["data_scientists"]), user("ops", ["ops_team"], "Ops")]


def instance(projects=(), futures=(), users=None, groups=None, **settings):
    """A whole instance. `settings`: dssVersion, node, abortDelay, faults."""
    return dict({"users": default_users() if users is None else list(users),
                 "groups": default_groups() if groups is None else list(groups),
                 "projects": list(projects), "futures": list(futures)}, **settings)


def project(key, notebooks=(), jobs=(), scenarios=(), webapps=(), continuous_activities=(), code_studios=(),
            owner="admin", **extra):
    return dict({"projectKey": key, "name": key.capitalize(), "owner": owner, "notebooks": list(notebooks),
                 "jobs": list(jobs), "scenarios": list(scenarios), "webapps": list(webapps),
                 "continuousActivities": list(continuous_activities), "codeStudios": list(code_studios)}, **extra)


def notebook(name, sessions=(), language="python", **extra):
    return dict({"name": name, "language": language, "sessions": list(sessions)}, **extra)


def session(creator, session_id=None, kernel_id=None, kernel_pid=None, started_ago="1h", idle_for="10m",
            state="idle", connections=0, **extra):
    out = {"creator": creator, "startedAgo": started_ago, "idleFor": idle_for, "state": state,
           "connections": connections}
    for name, value in (("sessionId", session_id), ("kernelId", kernel_id), ("kernelPid", kernel_pid)):
        if value is not None:
            out[name] = value
    return dict(out, **extra)


def job(job_id, initiator, started_ago="10m", state="RUNNING", kernel_pid=None, **extra):
    out = {"id": job_id, "initiator": initiator, "startedAgo": started_ago, "state": state}
    if kernel_pid is not None:
        out["kernelPid"] = kernel_pid
    return dict(out, **extra)


def future(job_id, owner, display_name=None, started_ago="1h", action="compute_metrics", **extra):
    return dict({"jobId": job_id, "owner": owner, "displayName": display_name or job_id, "startedAgo": started_ago,
                 "action": action}, **extra)


def scenario(scenario_id, name=None, running_by=None, started_ago="30m", future_id=None, **extra):
    """A step-based scenario; `running_by` (a login) makes it run now, as the future `future_id`."""
    out = {"id": scenario_id, "name": name or scenario_id, "type": "step_based", "active": True,
           "params": {"steps": []}, "triggers": []}
    if running_by:
        out["running"] = {"by": running_by, "startedAgo": started_ago, "jobId": future_id or "run-%s" % scenario_id}
    return dict(out, **extra)


def webapp(webapp_id, name=None, backend_pid=None, backend_owner="admin", started_ago="1d", running=True, **extra):
    """A webapp; with `running`, its backend runs (pid `backend_pid` when given)."""
    out = {"id": webapp_id, "name": name or webapp_id, "type": "STANDARD"}
    if running:
        backend = {"owner": backend_owner, "startedAgo": started_ago, "futureId": "wb-%s" % webapp_id}
        if backend_pid is not None:
            backend["pid"] = backend_pid
        out["backend"] = backend
    return dict(out, **extra)


def continuous_activity(recipe_id, owner, started_ago="1d", **extra):
    return dict({"recipeId": recipe_id, "owner": owner, "startedAgo": started_ago, "futureId": "ca-%s" % recipe_id},
                **extra)


def code_studio(cs_id, owner, state="RUNNING", started_ago="1d", **extra):
    return dict({"id": cs_id, "name": cs_id, "owner": owner, "state": state, "startedAgo": started_ago}, **extra)
