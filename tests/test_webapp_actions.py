"""The webapp acts only on what it listed (issue 10.1), never twice on the same activity (10.6), and writes
only safe text (10.7). Real dataikuapi over HTTP against the simulator; its request log is the judge."""
import json
import logging

import pytest

from test_webapp_backend import CSRF, Backend, as_user, error_of, sim  # noqa: F401 - `sim` is a fixture

ADMIN_PATHS = ("/admin/users", "/projects/PRJ", "/admin/")


@pytest.fixture()
def backend(sim, tmp_path, monkeypatch):  # noqa: F811 - the fixture of this module
    b = Backend(sim, tmp_path, monkeypatch, config={"allowedGroups": ["ops_team"]})
    yield b
    b.close()


def beyond_identity(sim):
    """The requests the webapp made to DSS other than identifying the browsing user."""
    return [r for r in sim.requests if not r.path.startswith(("/auth/", "/admin/groups/"))]


TRAVERSALS = [
    ("future", None, "../admin/users/alice"),
    ("future", None, "../projects/PRJ"),
    ("future", None, "%2e%2e/admin/users/alice"),
    ("scenario", None, "../admin/users/alice"),
    ("job", "PRJ", "../../admin/users/alice"),
    ("webapp", "PRJ", "../../../admin/users/alice"),
    ("notebook_session", "PRJ", "../../admin/users/alice"),
    ("continuous_activity", "../admin", "x"),
    ("code_studio", "PRJ/../..", "x"),
]


@pytest.mark.parametrize(("kind", "project_key", "bad_id"), TRAVERSALS)
@pytest.mark.parametrize("route", ["preview", "apply"])
def test_a_traversing_id_or_key_is_refused_at_the_body_and_reaches_no_dss_path(backend, sim, kind, project_key,
                                                                                  bad_id, route):
    body = {"kind": kind, "project_key": project_key, "id": bad_id, "confirm": True}
    response = backend.client.post("/api/actions/%s" % route, json=body, headers=dict(as_user("ops"), **CSRF))
    message = error_of(response, 400, "bad_parameter")
    assert message.split(":")[0] in ("id", "project_key")
    assert "\n" not in message
    assert beyond_identity(sim) == []  # not even a listing
    assert not any(r.path.startswith(ADMIN_PATHS) and not r.path.startswith("/admin/groups/") for r in sim.requests)


@pytest.mark.parametrize("route", ["preview", "apply"])
def test_a_valid_id_that_was_not_listed_is_404_not_listed_and_only_the_listing_is_read(backend, sim, route):
    body = {"kind": "future", "project_key": None, "id": "fut-404", "confirm": True}
    response = backend.client.post("/api/actions/%s" % route, json=body, headers=dict(as_user("admin"), **CSRF))
    error_of(response, 404, "not_listed")
    assert [(r.method, r.path) for r in beyond_identity(sim)] == [("GET", "/futures/")]
    assert sim.actions == [r for r in sim.actions if r.path.startswith("/auth/")]


def test_a_session_of_another_project_is_not_listed(backend, sim):
    body = {"kind": "notebook_session", "project_key": "OTHER", "id": "sess-1", "confirm": True}
    response = backend.client.post("/api/actions/apply", json=body, headers=dict(as_user("admin"), **CSRF))
    error_of(response, 404, "not_listed")
    assert "sess-1" in sim.session_ids()
    assert not any(r.method == "DELETE" for r in sim.requests)


def test_the_action_targets_the_listed_record(backend, sim):
    body = {"kind": "future", "project_key": None, "id": "fut-1", "confirm": True}
    response = backend.client.post("/api/actions/apply", json=body, headers=dict(as_user("ops"), **CSRF))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["outcome"] in ("aborted", "abort_requested")
    assert [(r.method, r.path) for r in sim.actions if r.method == "DELETE"] == [("DELETE", "/futures/fut-1")]
