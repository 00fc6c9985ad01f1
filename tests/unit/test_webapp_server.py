"""dev/webapp_server.py serves the webapp as DSS serves a STANDARD plugin webapp: the page built from style.css,
body.html and app.js with the `dataiku` JS stand-in, the backend behind DSS's proxy path with the browser's
cookies, plugin resources, and a login stand-in."""
import os

from flask import Flask, jsonify, request

from dev.webapp_server import PROJECT_KEY, WEBAPP_DIR, WEBAPP_ID, backend_prefix, build_app, view_path


def _backend():
    app = Flask("fake_backend")

    @app.route("/api/echo")
    def echo():
        return jsonify({"path": request.path, "script_root": request.script_root, "cookies": dict(request.cookies)})

    return app


def _read(name):
    with open(os.path.join(WEBAPP_DIR, name), encoding="utf-8") as f:
        return f.read()


def test_the_view_page_is_built_like_dss_builds_it():
    client = build_app(_backend(), {"samplingIntervalSeconds": 10}).test_client()
    page = client.get(view_path()).get_data(as_text=True)
    style, body, app_js = (page.index(_read(n).strip()[:200]) for n in ("style.css", "body.html", "app.js"))
    standin = page.index("getWebAppBackendUrl")
    assert standin < style < body < app_js, "DSS order: libraries, style, body, then app.js"
    assert '"%s"' % backend_prefix() in page
    assert "samplingIntervalSeconds" in page  # dataiku.getWebAppConfig()
    assert "<script src=" not in page  # nothing loaded from elsewhere, no CDN
    assert "</script" not in _read("app.js").lower()  # app.js is inlined in a <script> element
    assert client.get("/dip/api/webapps/view?projectKey=%s&webAppId=other" % PROJECT_KEY).status_code == 404


def test_the_backend_is_reached_through_dss_proxy_path_with_the_browser_cookies():
    client = build_app(_backend()).test_client()
    client.set_cookie("dss_sim_user", "alice")
    answer = client.get(backend_prefix() + "/api/echo").get_json()
    assert answer == {"path": "/api/echo", "script_root": "/web-apps-backends/%s/%s" % (PROJECT_KEY, WEBAPP_ID),
                      "cookies": {"dss_sim_user": "alice"}}


def test_login_sets_the_session_cookie_for_known_users_and_redirects_locally_only():
    client = build_app(_backend(), users=("admin", "alice")).test_client()
    response = client.get("/login?user=alice&next=/dip/api/webapps/view")
    assert response.status_code == 302 and response.headers["Location"] == "/dip/api/webapps/view"
    assert "dss_sim_user=alice" in response.headers["Set-Cookie"]
    assert client.get("/login?user=mallory").status_code == 400
    assert client.get("/login?user=alice&next=//evil.example.com/").headers["Location"] == "/"
    assert client.get("/login?user=alice&next=https://evil.example.com/").headers["Location"] == "/"


def test_the_shell_signs_in_the_default_user_and_frames_the_webapp():
    client = build_app(_backend(), default_user="admin").test_client()
    first = client.get("/")
    assert first.status_code == 302 and first.headers["Location"] == "/login?user=admin"
    client.set_cookie("dss_sim_user", "admin")
    shell = client.get("/").get_data(as_text=True)
    assert '<iframe id="webapp"' in shell and "webAppId=%s" % WEBAPP_ID in shell
    assert client.get("/favicon.ico").status_code == 204


def test_plugin_resources_are_served_from_the_resource_folder_and_nothing_else():
    client = build_app(_backend()).test_client()
    assert client.get("/plugins/process-tracker/resource/../plugin.json").status_code == 404
    assert client.get("/plugins/process-tracker/resource/missing.js").status_code == 404
