"""The Flask app serving DSS's public API under /dip/publicapi, over a `State`. Routes are thin.

Transport as DSS does it: an API key as HTTP Basic username (empty password), or an internal ticket in the
`X-DKU-APITicket` header (a ticket is issued for one user by `State.issue_ticket`; an API key is not a ticket); JSON bodies read whatever the Content-Type (the client sends none);
`True`/`False` query booleans; errors as {errorType, message, detailedMessage} with 401/403/404/500; a JSON body
wherever dataikuapi calls `.json()`. Faults (latency, hang, error rate, malformed body, failing project) are applied
before authentication, like a network or server fault would be. Every request is logged in `State.log`.
"""
import json

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from .state import BAD_REQUEST, FAULT, NOT_FOUND, SimError

PREFIX = "/dip/publicapi"


def _js(obj, status=200):
    return Response(json.dumps(obj), status=status, mimetype="application/json")


def _body():
    data = request.get_data()
    try:
        return json.loads(data) if data else None
    except ValueError:
        raise SimError(400, BAD_REQUEST, "The request body is not valid JSON") from None


def _flag(name, default=False):
    value = request.args.get(name)
    return default if value is None else value.strip().lower() in ("true", "1", "yes")


def _credentials():
    """(api key, ticket): the Basic username when there is one, else the X-DKU-APITicket header."""
    auth = request.authorization
    if auth is not None and auth.type == "basic" and auth.username:
        return auth.username, None
    return None, request.headers.get("X-DKU-APITicket")


def create_app(state):
    """A Flask app answering for `state`."""
    app = Flask("dss_simulator")
    app.url_map.strict_slashes = False

    def route(rule, methods=("GET",)):
        return app.route(PREFIX + rule, methods=list(methods))

    def user():
        return g.user

    def require_v15():
        try:
            major = int(str(state.dss_version).split(".")[0])
        except ValueError:
            major = 0
        if major < 15:
            status = state.missing_endpoint_status
            raise SimError(status, NOT_FOUND if status == 404 else BAD_REQUEST,
                           "No such API endpoint: %s" % request.path)

    @app.before_request
    def _before():
        g.user = None
        g.malformed = False
        if not request.path.startswith(PREFIX + "/"):
            raise SimError(404, NOT_FOUND, "No such endpoint: %s" % request.path)
        path = request.path[len(PREFIX):]
        latency, hang, error, g.malformed = state.faults_for(request.method, path)
        if latency:
            state.shutdown.wait(latency)
        if hang:
            state.shutdown.wait(state.hang_seconds)
            raise SimError(500, FAULT, "Simulated hang ended")
        if error:
            raise SimError(500, FAULT, "Simulated failure on %s %s" % (request.method, path))
        g.user = state.authenticate(*_credentials())
        if path.startswith("/admin/"):
            state.require_admin(g.user)

    @app.after_request
    def _after(response):
        if g.get("malformed") and response.status_code < 400:
            response = Response('{"broken": [1, 2', status=200, mimetype="application/json")
        replaced, value = state.answer_for(request.path[len(PREFIX):])
        if replaced and response.status_code < 400:
            response = _js(value)
        login = g.user.login if g.get("user") is not None else None
        state.record(request.method, request.path[len(PREFIX):], login, response.status_code)
        return response

    @app.errorhandler(SimError)
    def _sim_error(e):
        return _js(e.body(), e.status)

    @app.errorhandler(HTTPException)
    def _http_error(e):
        error_type = NOT_FOUND if e.code == 404 else "com.dataiku.dip.exceptions.DKUHttpException"
        return _js(SimError(e.code, error_type, "%s: %s %s" % (e.name, request.method, request.path)).body(), e.code)

    @app.errorhandler(Exception)
    def _fault(e):
        return _js(SimError(500, FAULT, "Internal error: %s" % e.__class__.__name__).body(), 500)

    # ----- instance, identity, users -----------------------------------------------------------------------
    @route("/instance-info")
    def instance_info():
        info = dict(state.node)
        if state.dss_version:  # an instance without a version stands for a DSS that does not say
            info["dssVersion"] = state.dss_version
        if state.data_dir:
            info["dataDirPath"] = state.data_dir
        return _js(info)

    @route("/__sim/ticket", methods=("POST",))
    def sim_ticket():
        """Not a DSS route: a ticket for the caller's API key, for the DSS harnesses when this simulator serves in
        another process than the code they run (revoked with the key)."""
        key, _ = _credentials()
        if not key:
            raise SimError(401, "com.dataiku.dip.exceptions.NotAuthenticatedException", "An API key is needed")
        return _js({"ticket": state.issue_ticket(user().login, for_key=key)})

    @route("/auth/info")
    def auth_info():
        return _js(state.auth_info(user(), _flag("withSecrets")))

    @route("/auth/info-from-browser-headers", methods=("POST",))
    def auth_from_headers():
        return _js(state.auth_from_browser_headers(_body(), _flag("withSecrets")))

    @route("/admin/users/")
    def users():
        return _js([state.user_json(u) for u in state.users.values()])

    @route("/admin/users/<login>")
    def a_user(login):
        if login not in state.users:
            raise SimError(404, NOT_FOUND, "User %s does not exist" % login)
        return _js(state.user_json(state.users[login]))

    @route("/admin/groups/")
    def groups():
        return _js([state.group_json(gr) for gr in state.groups.values()])

    @route("/admin/groups/<name>")
    def a_group(name):
        if name not in state.groups:
            raise SimError(404, NOT_FOUND, "Group %s does not exist" % name)
        return _js(state.group_json(state.groups[name]))

    @route("/projects/")
    def projects():
        with state.lock:
            return _js([dict(p) for _, p in sorted(state.projects.items())])

    # ----- futures ----------------------------------------------------------------------------------------
    @route("/futures/")
    def futures():
        return _js(state.list_futures(user(), _flag("withScenarios", True), _flag("withNotScenarios", True),
                                      _flag("allUsers")))

    @route("/futures/<job_id>")
    def future(job_id):
        return _js(state.get_future(user(), job_id, _flag("peek")))

    @route("/futures/<job_id>", methods=("DELETE",))
    def abort_future(job_id):
        state.abort_future(user(), job_id)
        return Response(status=204)

    # ----- notebooks --------------------------------------------------------------------------------------
    @route("/admin/notebooks/")
    def running_notebooks():
        return _js(state.admin_notebooks(user()))

    @route("/projects/<pk>/jupyter-notebooks/")
    def notebooks(pk):
        return _js(state.list_notebooks(user(), pk, _flag("active")))

    @route("/projects/<pk>/jupyter-notebooks/<path:nb>/sessions")  # the client does not encode "/" in names
    def sessions(pk, nb):
        return _js(state.list_sessions(user(), pk, nb))

    @route("/projects/<pk>/jupyter-notebooks/<path:nb>/sessions/<sid>", methods=("DELETE",))
    def unload(pk, nb, sid):
        return _js(state.unload_session(user(), pk, nb, sid))

    @route("/projects/<pk>/notebooks/", methods=("GET", "DELETE"))
    def legacy_notebook(pk):
        nb = request.args.get("notebookName", "")
        if request.method == "DELETE":
            return _js(state.unload_session(user(), pk, nb, request.args.get("sessionId", "")))
        return _js(state.legacy_notebook(user(), pk, nb))

    # ----- jobs -------------------------------------------------------------------------------------------
    @route("/projects/<pk>/jobs/")
    def jobs(pk):
        return _js(state.list_jobs(user(), pk))

    @route("/projects/<pk>/jobs/running/")
    def project_running_jobs(pk):
        require_v15()
        return _js(state.list_jobs(user(), pk, running=True))

    @route("/jobs/running/")
    def running_jobs():
        require_v15()
        return _js(state.list_jobs(user(), None, running=True, all_users=_flag("allUsers")))

    @route("/projects/<pk>/jobs/<job_id>/")
    def job_status(pk, job_id):
        return _js(state.job_status(user(), pk, job_id))

    @route("/projects/<pk>/jobs/<job_id>/abort", methods=("POST",))
    def abort_job(pk, job_id):
        return _js(state.abort_job(user(), pk, job_id))

    # ----- scenarios --------------------------------------------------------------------------------------
    @route("/projects/<pk>/scenarios/", methods=("GET", "POST"))
    def scenarios(pk):
        if request.method == "POST":
            return _js(state.create_scenario(user(), pk, _body()))
        return _js(state.list_scenarios(pk))

    @route("/projects/<pk>/scenarios/<sid>", methods=("GET", "PUT"))
    def scenario(pk, sid):
        if request.method == "PUT":
            return _js(state.save_scenario(user(), pk, sid, _body()))
        return _js(state.get_scenario(pk, sid))

    @route("/projects/<pk>/scenarios/<sid>/light", methods=("GET", "PUT"))
    def scenario_light(pk, sid):
        if request.method == "PUT":
            return _js(state.set_scenario_light(pk, sid, _body()))
        return _js(state.get_scenario_light(pk, sid))

    @route("/projects/<pk>/scenarios/<sid>/payload", methods=("GET", "PUT"))
    def scenario_payload(pk, sid):
        script = (_body() or {}).get("script", "") if request.method == "PUT" else None
        return _js(state.scenario_payload(pk, sid, script))

    @route("/projects/<pk>/scenarios/<sid>/abort", methods=("POST",))
    def abort_scenario(pk, sid):
        return _js(state.abort_scenario(user(), pk, sid))

    # ----- webapps, continuous activities, code studios ----------------------------------------------------
    @route("/projects/<pk>/webapps/")
    def webapps(pk):
        return _js(state.list_webapps(pk))

    @route("/projects/<pk>/webapps/<wid>")
    def webapp(pk, wid):
        return _js(state.webapp(pk, wid))

    @route("/projects/<pk>/webapps/<wid>/backend/state")
    def webapp_state(pk, wid):
        return _js(state.webapp_state(pk, wid))

    @route("/projects/<pk>/webapps/<wid>/backend/actions/stop", methods=("PUT",))
    def stop_webapp(pk, wid):
        state.stop_webapp(user(), pk, wid)
        return Response(status=204)

    @route("/projects/<pk>/continuous-activities/")
    def continuous_activities(pk):
        return _js(state.list_continuous_activities(pk))

    @route("/projects/<pk>/continuous-activities/<rid>/")
    def continuous_activity(pk, rid):
        return _js(state.get_continuous_activity(pk, rid))

    @route("/projects/<pk>/continuous-activities/<rid>/stop", methods=("POST",))
    def stop_continuous_activity(pk, rid):
        state.stop_continuous_activity(user(), pk, rid)
        return Response(status=204)

    @route("/projects/<pk>/code-studios/")
    def code_studios(pk):
        return _js(state.list_code_studios(pk))

    @route("/projects/<pk>/code-studios/<cid>")
    def code_studio(pk, cid):
        return _js(state.code_studio(pk, cid))

    @route("/projects/<pk>/code-studios/<cid>/status")
    def code_studio_status(pk, cid):
        return _js(state.code_studio_status(pk, cid))

    @route("/projects/<pk>/code-studios/<cid>/stop", methods=("POST",))
    def stop_code_studio(pk, cid):
        return _js(state.stop_code_studio(user(), pk, cid))

    return app
