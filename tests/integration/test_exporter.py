"""The Prometheus exporter (process_tracker.exporter, `process-tracker exporter`) against the real demo fleet, the
DSS simulator over HTTP with the real dataikuapi client, and real HTTP scrapes parsed by prometheus_client's parser.

Ground truth: the fleet's own layout (which process is which role, test_host.EXPECTED) and /proc (RssAnon)."""
import os
import shutil
import signal
import subprocess
import sys
import threading

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from test_host import EXPECTED

from process_tracker import cli
from process_tracker.exporter import Exporter, ExporterOptions, ServeOptions, serve
from process_tracker.host import ScanOptions

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(os.path.dirname(sys.executable), "process-tracker")
PROMTOOL = shutil.which("promtool")


def rss_anon(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(pid)


def samples(text):
    """{metric name: [(labels dict, value)]} of an exposition."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def by(samples_, name, *keys):
    return {tuple(labels[k] for k in keys): value for labels, value in samples_.get(name, [])}


def scrape(url, **kwargs):
    r = requests.get(url, timeout=10, **kwargs)
    r.raise_for_status()
    return r.text


@pytest.fixture
def served():
    """Factory: serve(exporter) on a free loopback port; every server is shut down at teardown."""
    servers = []

    def make(exporter, **options):
        server = serve(exporter, ServeOptions(listen="127.0.0.1:0", **options))
        servers.append(server)
        return "http://127.0.0.1:%d" % server.server_port

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


def fleet_truth(fleet):
    """{role: (processes, RssAnon bytes)} of the fleet's DSS processes, from its layout and /proc."""
    truth = {}
    for name, pid in fleet.pids.items():
        role, _label, link, directory = EXPECTED[name]
        if directory is None:
            continue
        count, memory = truth.get(role, (0, 0))
        truth[role] = (count + (0 if link else 1), memory + rss_anon(pid))
    return truth


def test_role_sums_equal_the_fleets_ground_truth_and_no_pid_label(fleet, served):
    exporter = Exporter(ExporterOptions(dss_datadirs=(fleet.dip_home,)))
    exporter.scan_once()
    exporter.scan_once()  # the second scan measures CPU
    got = samples(scrape(served(exporter) + "/metrics"))
    truth = fleet_truth(fleet)
    counts = by(got, "dss_processes", "dss_datadir", "role")
    memory = by(got, "dss_process_rss_anon_bytes", "dss_datadir", "role")
    assert {role for _, role in counts} == set(truth)
    assert {d for d, _ in counts} == {fleet.dip_home}  # only the asked data directory; not_dss left out
    for role, (count, rss) in truth.items():
        assert counts[(fleet.dip_home, role)] == count, role
        assert memory[(fleet.dip_home, role)] == pytest.approx(rss, rel=0.02), role
    assert set(by(got, "dss_process_cpu_seconds_total", "dss_datadir", "role")) == set(counts)
    xmx = by(got, "dss_jvm_xmx_bytes", "role")
    assert xmx[("backend",)] == 4 * 1024 ** 3 and xmx[("jek",)] == 2 * 1024 ** 3
    assert 0 < by(got, "dss_jvm_rss_to_xmx_ratio", "role")[("backend",)] < 0.1
    for name, rows in got.items():
        for labels, _ in rows:
            assert "pid" not in labels and "instance" not in labels, name
    assert by(got, "process_tracker_exporter_scans_total")[()] == 2
    assert by(got, "process_tracker_exporter_scanned_processes")[()] >= len(fleet.pids)
    assert "process_cpu_seconds_total" in got  # the exporter's own cost


def test_dss_listing_joins_activities_orphans_and_bounds_the_activity_series(fleet, simulator, demo_instance, served):
    sim = simulator(demo_instance, fleet_pids=fleet.pids)
    client = sim.client()
    exporter = Exporter(ExporterOptions(dss_datadirs=(fleet.dip_home,)), make_client=lambda: client)
    exporter.scan_once()
    assert exporter.list_once() is True
    url = served(exporter)
    got = samples(scrape(url + "/metrics"))
    activity = by(got, "dss_activity_rss_anon_bytes", "kind", "project", "activity", "user")
    kernel_1 = [(k, v) for k, v in activity.items() if k[0] == "notebook_session" and k[3] == "alice"
                and v == pytest.approx(rss_anon(fleet.pid("kernel-1")), rel=0.02)]
    assert kernel_1, activity
    idle = by(got, "dss_activity_idle_seconds", "kind", "project", "activity", "user")
    assert idle[kernel_1[0][0]] >= 8 * 86400 - 60  # the demo's kernel-1 is idle for 8 days
    jobs = [v for k, v in activity.items() if k[0] == "job"]
    assert sum(jobs) >= rss_anon(fleet.pid("jek-1")) + rss_anon(fleet.pid("recipe-1"))  # the JEK and its recipe
    listed = by(got, "dss_activities", "kind", "state")
    assert listed and all(v >= 1 for v in listed.values())
    assert {kind for kind, _ in listed} >= {"notebook_session", "job", "webapp"}
    orphans = by(got, "dss_orphan_processes", "dss_datadir", "role")
    assert orphans[(fleet.dip_home, "jupyter_kernel")] == 1  # kernel-orphan: no session names it
    assert by(got, "process_tracker_exporter_listing_age_seconds")[()] >= 0
    assert by(got, "process_tracker_exporter_folded_activities")[()] == 0

    bounded = Exporter(ExporterOptions(dss_datadirs=(fleet.dip_home,), max_activity_series=2),
                       make_client=lambda: client)
    bounded.scan_once()
    bounded.list_once()
    few = samples(scrape(served(bounded) + "/metrics"))
    rows = few["dss_activity_rss_anon_bytes"]
    named = [labels for labels, _ in rows if labels["activity"] != "other"]
    others = [(labels, v) for labels, v in rows if labels["activity"] == "other"]
    assert len(named) == 2 and others
    assert all(labels["project"] == "" and labels["user"] == "" for labels, _ in others)
    assert sum(v for _, v in rows) == pytest.approx(sum(activity.values()))  # nothing lost, only folded
    folded = by(few, "process_tracker_exporter_folded_activities")[()]
    assert folded == len(activity) - 2
    assert len(few.get("dss_activity_idle_seconds", [])) <= 2


def test_a_failing_dss_listing_is_counted_and_the_host_metrics_stay(fleet, served):
    def unreachable():
        from process_tracker.dss import get_client

        return get_client(url="http://127.0.0.1:9", api_key="k", timeout=2)

    exporter = Exporter(ExporterOptions(dss_datadirs=(fleet.dip_home,)), make_client=unreachable)
    exporter.scan_once()
    assert exporter.list_once() is False
    got = samples(scrape(served(exporter) + "/metrics"))
    assert by(got, "process_tracker_exporter_listing_errors_total")[()] >= 1
    assert by(got, "dss_processes", "role")[("backend",)] == 1
    assert "dss_activity_rss_anon_bytes" not in got


def test_cgroup_usage_limit_and_oom_kills_from_the_cgroup_files(fleet, served, tmp_path):
    """The fleet's processes are in this machine's real memory cgroup (read from /proc/<pid>/cgroup); marked as a
    DSS cgroup, its figures are read under --cgroup-root. Tests must not create cgroups on a shared machine, so
    the root is a directory shaped like /sys/fs/cgroup (v1 memory controller) whose files the test writes."""
    from process_tracker.host import parse_proc_cgroup

    with open("/proc/%d/cgroup" % fleet.pid("backend"), "rb") as f:
        path, version = parse_proc_cgroup(f.read())
    if not path or path == "/":
        pytest.skip("the fleet runs in the root cgroup here")
    marker = [part for part in path.split("/") if part][0]
    base = tmp_path / ("memory" + path) if version == 1 else tmp_path / path.lstrip("/")
    base.mkdir(parents=True)
    files = ({"memory.usage_in_bytes": "900\n", "memory.limit_in_bytes": "1000\n",
              "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"} if version == 1 else
             {"memory.current": "900\n", "memory.max": "1000\n", "memory.events": "low 0\noom 3\noom_kill 3\n"})
    for name, text in files.items():
        (base / name).write_text(text)
    options = ExporterOptions(dss_datadirs=(fleet.dip_home,),
                              scan=ScanOptions(cgroup_root=str(tmp_path), cgroup_markers=(marker,)))
    exporter = Exporter(options)
    exporter.scan_once()
    got = samples(scrape(served(exporter) + "/metrics"))
    assert by(got, "dss_cgroup_memory_usage_bytes", "cgroup") == {(path,): 900}
    assert by(got, "dss_cgroup_memory_limit_bytes", "cgroup") == {(path,): 1000}
    assert by(got, "dss_cgroup_oom_kills_total", "cgroup") == {(path,): 3}


@pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: `make test` installs Debian's prometheus")
def test_promtool_check_metrics_passes_on_a_full_scrape(fleet, simulator, demo_instance, served):
    sim = simulator(demo_instance, fleet_pids=fleet.pids)
    client = sim.client()
    exporter = Exporter(ExporterOptions(dss_datadirs=(fleet.dip_home,)), make_client=lambda: client)
    exporter.scan_once()
    exporter.list_once()
    exporter.scan_once()
    text = scrape(served(exporter) + "/metrics")
    done = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert exporter.series_count() < 600  # the default bound, with every family present


def test_healthz_and_unknown_paths(served):
    exporter = Exporter(ExporterOptions())
    url = served(exporter)
    assert requests.get(url + "/healthz", timeout=10).status_code == 503  # no scan yet
    exporter.scan_once()
    r = requests.get(url + "/healthz", timeout=10)
    assert (r.status_code, r.text) == (200, "ok\n")
    assert requests.get(url + "/nothing", timeout=10).status_code == 404


def test_healthz_fails_when_the_last_good_scan_is_old(served):
    now = [1_000_000.0]
    exporter = Exporter(ExporterOptions(scan_interval_seconds=15), clock=lambda: now[0])
    exporter.scan_once()
    url = served(exporter) + "/healthz"
    now[0] += 44  # within 3 intervals
    assert requests.get(url, timeout=10).status_code == 200
    now[0] += 17  # 61 s: past 3 intervals and a minute
    r = requests.get(url, timeout=10)
    assert (r.status_code, r.text) == (503, "last scan 61 s ago\n")


def _certificate(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return str(cert), str(key)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make a test certificate")
def test_cli_serves_tls_with_basic_auth_and_stops_cleanly_on_sigterm(tmp_path):
    cert, key = _certificate(tmp_path)
    secret = tmp_path / "password"
    secret.write_text("s3cret-for-test\n")
    proc = subprocess.Popen(
        [CLI, "exporter", "--no-dss", "--listen", "127.0.0.1:0", "--scan-interval", "0.5", "--tls-cert-file", cert,
         "--tls-key-file", key, "--basic-auth-user", "prom", "--basic-auth-password-file", str(secret)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("process-tracker exporter: serving https://127.0.0.1:"), line + proc.stderr.read()
        url = line.split()[3].rsplit("/", 1)[0]
        assert requests.get(url + "/metrics", verify=cert, timeout=10).status_code == 401
        assert requests.get(url + "/metrics", verify=cert, auth=("prom", "wrong"), timeout=10).status_code == 401
        text = scrape(url + "/metrics", verify=cert, auth=("prom", "s3cret-for-test"))
        assert "process_tracker_exporter_scans_total" in text
        assert requests.get(url + "/healthz", verify=cert, timeout=10).status_code == 200  # no auth for health
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(url.replace("https:", "http:") + "/metrics", timeout=10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert "s3cret" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("argv, option", [
    (["--scan-interval", "0"], "--scan-interval"),
    (["--max-activity-series", "-1"], "--max-activity-series"),
    (["--listen", "nowhere"], "listen"),
    (["--tls-cert-file", "/nonexistent.pem"], "tls"),
    (["--basic-auth-user", "prom"], "--basic-auth-user"),
])
def test_bad_options_end_with_one_line_naming_the_option(argv, option, capsys, monkeypatch):
    monkeypatch.delenv("PT_EXPORTER_PASSWORD", raising=False)
    assert cli.main(["exporter", "--no-dss"] + argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("process-tracker: error: %s" % option) and err.count("\n") == 1, err


def test_the_listener_is_loopback_by_default():
    assert ServeOptions().address() == ("127.0.0.1", 9101)
    assert ServeOptions(listen=":9101").address() == ("0.0.0.0", 9101)
    assert ServeOptions(listen="[::1]:9101").address() == ("::1", 9101)


def test_the_loops_stop_when_asked(fleet):
    exporter = Exporter(ExporterOptions(scan_interval_seconds=0.2, dss_datadirs=(fleet.dip_home,)))
    stop = threading.Event()
    thread = threading.Thread(target=exporter.run, args=(stop,))
    thread.start()
    try:
        for _ in range(200):
            if exporter.health()[0]:
                break
            stop.wait(0.05)
        assert exporter.health() == (True, "ok")
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_a_scrape_between_scans_serves_the_same_bytes_in_the_format_asked(fleet, served):
    exporter = Exporter(ExporterOptions(dss_datadirs=(fleet.dip_home,)))
    exporter.scan_once()
    url = served(exporter) + "/metrics"
    first, second = (requests.get(url, timeout=10) for _ in range(2))
    assert first.content == second.content and first.headers["Content-Type"].startswith("text/plain")
    om = requests.get(url, headers={"Accept": "application/openmetrics-text; version=1.0.0"}, timeout=10)
    assert om.headers["Content-Type"].startswith("application/openmetrics-text") and om.text.endswith("# EOF\n")
    zipped = requests.get(url, headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert zipped.headers["Content-Encoding"] == "gzip" and zipped.content == first.content  # requests inflates
    exporter.scan_once()
    assert b"process_tracker_exporter_scans_total 2.0" in requests.get(url, timeout=10).content
    only = requests.get(url + "?name[]=dss_processes", timeout=10).text
    assert "dss_processes{" in only and "process_tracker_exporter_scans_total" not in only


def test_a_taken_port_is_one_line_naming_listen_and_restores_the_process_state(capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        before = (signal.getsignal(signal.SIGTERM), sys.getswitchinterval())
        assert cli.main(["exporter", "--no-dss", "--listen", "127.0.0.1:%d" % port]) == 1
    err = capsys.readouterr().err
    assert err.startswith("process-tracker: error: listen: cannot listen on 127.0.0.1:%d" % port), err
    assert (signal.getsignal(signal.SIGTERM), sys.getswitchinterval()) == before
