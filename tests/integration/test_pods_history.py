"""The webapp's history with DSS's pods (k8sEnabled): the sampler records the pods' role totals beside the host's
("pod:<role>" series), so the history charts show pod memory over time. The real kubernetes client over HTTP
against the simulated API server; the webapp loaded as DSS loads it."""
import sqlite3
from contextlib import closing

import pytest
from test_pods_webapp import _backend, k8s, sim  # noqa: F401 - fixtures
from test_webapp_backend import FakeScanner, as_user

from process_tracker.history import HistoryStore
from process_tracker.pod_views import PodSource
from process_tracker.pods import PodSettings
from process_tracker.sampler import Sampler

MI = 1024 * 1024


def test_a_sample_writes_pod_role_totals_beside_the_hosts(k8s, tmp_path):  # noqa: F811
    store = HistoryStore(str(tmp_path / "history"))
    source = PodSource(PodSettings(), api_client_factory=k8s.api_client)
    sampler = Sampler(store, lambda: FakeScanner(), interval_seconds=10, pods=lambda: source.listing().pods)
    try:
        assert sampler.try_elect() and sampler.sample_once()
    finally:
        sampler.stop()
    with closing(sqlite3.connect(store.path)) as c:
        rows = {r[0]: r[1:] for r in c.execute("SELECT role, count, rss_anon_bytes FROM role_raw")}
    assert rows["pod:jupyter_kernel"] == (2, (1800 + 3100) * MI)
    assert rows["pod:spark_executor"] == (2, 2 * 2600 * MI)
    assert any(not role.startswith("pod:") for role in rows)  # the host's roles are still there
    series = store.role_series("1h")
    assert max(series.roles["pod:ml_training"]["rss_anon_bytes"]) == pytest.approx(6 * 1024 * MI)


def test_an_unreachable_cluster_writes_the_host_sample_only(k8s, tmp_path):  # noqa: F811
    store = HistoryStore(str(tmp_path / "history"))
    source = PodSource(PodSettings(timeout_seconds=1), api_client_factory=k8s.api_client)
    k8s.stop()
    sampler = Sampler(store, lambda: FakeScanner(), interval_seconds=10, pods=lambda: source.listing().pods)
    try:
        assert sampler.try_elect() and sampler.sample_once()
    finally:
        sampler.stop()
    roles = store.role_series("1h").roles
    assert roles and not any(r.startswith("pod:") for r in roles)


def test_the_webapps_sampler_records_pods_and_the_history_chart_shows_them(sim, k8s, tmp_path,  # noqa: F811
                                                                            monkeypatch):
    b = _backend(sim, k8s, tmp_path, monkeypatch)
    try:
        b.writer.stop()  # the test's own writer steps aside: the webapp's sampler (with pods) writes
        assert b.state.sampler.sample_once()
        body = b.client.get("/api/history?window=1h", headers=as_user("admin")).get_json()
    finally:
        b.close()
    traces = {t["name"]: t for t in body["figures"]["memory_by_role"]["data"]}
    pods = [name for name in traces if name.endswith("(pods)")]
    assert pods, sorted(traces)
    assert max(max(traces[name]["y"]) for name in pods) > 0


def test_a_pod_listing_that_raises_never_costs_the_hosts_sample(tmp_path):
    store = HistoryStore(str(tmp_path / "history"))

    def broken():
        raise RuntimeError("a bug in the pod source")

    sampler = Sampler(store, lambda: FakeScanner(), interval_seconds=10, pods=broken)
    try:
        assert sampler.try_elect() and sampler.sample_once()
    finally:
        sampler.stop()
    roles = store.role_series("1h").roles
    assert roles and not any(r.startswith("pod:") for r in roles)
