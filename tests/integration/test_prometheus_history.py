"""prom_history's failure modes (the happy path runs against a real Prometheus in test_prometheus.py)."""
import socket

import pytest

from process_tracker.errors import ConfigError
from process_tracker.prom_history import PrometheusError, PrometheusHistory, check_url, selector


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("url", ["", "ftp://x", "prometheus:9090", "http://p:9090/?q=1", None])
def test_bad_urls_are_refused_naming_the_setting(url):
    with pytest.raises(ConfigError) as e:
        PrometheusHistory(url)
    assert e.value.param == "prometheusUrl"


def test_a_url_keeps_its_path_prefix_without_trailing_slash():
    assert check_url(" https://mon.example.com/prometheus/ ") == "https://mon.example.com/prometheus"


@pytest.mark.parametrize("node", ["", "a\nb", "x" * 201, 3])
def test_bad_nodes_are_refused(node):
    with pytest.raises(ConfigError) as e:
        selector(node)
    assert e.value.param == "node"


def test_node_values_are_escaped_as_promql_strings():
    assert selector('a"b\\c') == '{instance="a\\"b\\\\c"}'
    assert selector(None) == ""


def test_an_unreachable_prometheus_is_one_readable_error():
    source = PrometheusHistory("http://127.0.0.1:%d" % closed_port(), timeout_seconds=2)
    with pytest.raises(PrometheusError, match="unreachable"):
        source.nodes()
    with pytest.raises(PrometheusError):
        source.role_series("1h")


def test_an_http_server_that_is_not_prometheus_is_an_error(simulator):
    sim = simulator()  # a real HTTP server answering something else than Prometheus's API
    with pytest.raises(PrometheusError, match="HTTP"):
        PrometheusHistory(sim.url).nodes()


def test_an_unknown_window_names_the_parameter():
    with pytest.raises(ConfigError) as e:
        PrometheusHistory("http://127.0.0.1:9").role_series("2y")
    assert e.value.param == "window"
