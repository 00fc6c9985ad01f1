"""The exporter's cost side by side with Debian's prometheus-process-exporter, in one run, on the same processes.

Setup: 2,000 DSS-shaped sleepers (forked under four "nursery" processes, one per role marker: JEK, FEK, CAK and
event server JVM command lines with `-Ddku.<role>` and a `<DIP_HOME>/bin` classpath, comm `java`; they exit when
this script's lifeline pipe closes). Then, both started at once:
- `process-tracker exporter --no-dss --scan-interval S` (scans on its own interval, serves the last scan);
- `prometheus-process-exporter` with a config grouping the same processes by the same markers (cmdline
  regexes `-Ddku\\.jek`, ...), `-gather-smaps=false -threads=false` by default (the closest to what
  process-tracker reads; `--pe-defaults` keeps its defaults: smaps and per-thread metrics on). It reads /proc
  on every scrape.
Both are scraped every S seconds (15 in production; `--interval`, default 5, to keep the run under ~70 s)
during a window that starts once the sleepers are older than the scanner's young age (steady state).
Reported: CPU seconds per minute of each exporter process over the window, series count, then scrape latency
p50/p95 over the window's scrapes and `--latency-scrapes` more at random moments (process-exporter: 3 more,
each of its scrapes being a scan); finally, in this process, a steady
`Scanner.scan()` vs a bare `psutil.process_iter` pass (ppid, create_time, cpu_times, memory_info, status) vs a
pure-Python read of /proc/<pid>/{stat,status} for every pid (the floor), medians of `--reps`.

    .venv/bin/python bench/exporter.py [--processes 2000] [--interval 5] [--window 30] [--pe-defaults]
"""
import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python-lib"))

import psutil  # noqa: E402
import requests  # noqa: E402

from process_tracker.host import Scanner  # noqa: E402
from scan import pure_python_pass  # noqa: E402  (bench/scan.py: the floor)

ROLES = {  # role -> (marker, main class): JVM command lines as DSS starts them
    "jek": ("-Ddku.jek", "com.dataiku.dip.dataflow.kernel.slave.DSSJobKernelMain"),
    "fek": ("-Ddku.fek", "com.dataiku.dip.futures.DSSFutureKernelMain"),
    "cak": ("-Ddku.cak", "com.dataiku.dip.dataflow.streaming.slave.DSSCAKernelMain"),
    "eventserver": ("-Ddku.eventserver", "com.dataiku.dip.eventsserver.EventServerMain"),
}
# forks `count` sleepers named `java` (comm, as a JVM's) that exit when the lifeline pipe closes
NURSERY = r"""
import ctypes, os, sys
lifeline, ready, count = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for _ in range(count):
    if os.fork() == 0:
        os.close(ready)
        ctypes.CDLL(None).prctl(15, b"java", 0, 0, 0)  # PR_SET_NAME
        os.read(lifeline, 1)
        os._exit(0)
os.write(ready, b"ok")
os.close(ready)
os.read(lifeline, 1)
for _ in range(count):
    os.wait()
"""
# the exporter of this checkout (python-lib first on its path), whichever checkout the venv was installed from
CLI = [sys.executable, "-m", "process_tracker"]
CLI_ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(
    p for p in (os.path.join(ROOT, "python-lib"), os.environ.get("PYTHONPATH")) if p))
PE = shutil.which("prometheus-process-exporter")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(count, dss_dir):
    """One nursery per role, `count` sleepers in all. Returns (nurseries, lifeline write fd)."""
    lifeline_r, lifeline_w = os.pipe()
    nurseries = []
    share = count // len(ROLES)
    for i, (marker, main) in enumerate(ROLES.values()):
        n = share + (count - share * len(ROLES) if i == 0 else 0)
        ready_r, ready_w = os.pipe()
        argv = [sys.executable, "-c", NURSERY, str(lifeline_r), str(ready_w), str(n), marker, "-Xmx2g", "-cp",
                dss_dir + "/bin:/opt/dataiku/dss/dist/*", main]
        nurseries.append(subprocess.Popen(argv, pass_fds=(lifeline_r, ready_w)))
        os.close(ready_w)
        if os.read(ready_r, 2) != b"ok":
            raise RuntimeError("a nursery did not start its sleepers")
        os.close(ready_r)
    os.close(lifeline_r)
    return nurseries, lifeline_w


def pe_config(path):
    with open(path, "w") as f:
        f.write("process_names:\n")
        for role, (marker, _) in ROLES.items():
            f.write("  - name: %s\n    cmdline:\n      - '%s'\n" % (role, marker.replace(".", "\\.")))


def start_exporters(tmp, interval, pe_defaults):
    pt_port, pe_port = free_port(), free_port()
    pt = subprocess.Popen(CLI + ["exporter", "--no-dss", "--listen", "127.0.0.1:%d" % pt_port, "--scan-interval",
                                 str(interval), "--dss-datadir", os.path.join(tmp, "dss_data")],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=CLI_ENV)
    config = os.path.join(tmp, "process-exporter.yml")
    pe_config(config)
    flags = [] if pe_defaults else ["-gather-smaps=false", "-threads=false"]
    pe = subprocess.Popen([PE, "-config.path", config, "-web.listen-address", "127.0.0.1:%d" % pe_port] + flags,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    urls = {"process-tracker": "http://127.0.0.1:%d/metrics" % pt_port,
            "process-exporter": "http://127.0.0.1:%d/metrics" % pe_port}
    deadline = time.monotonic() + 30
    for url in urls.values():
        while True:
            try:
                requests.get(url, timeout=30).raise_for_status()
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    return {"process-tracker": pt, "process-exporter": pe}, urls


def scrape(url):
    t0 = time.perf_counter()
    r = requests.get(url, timeout=30)
    r.raise_for_status()
    return time.perf_counter() - t0, r.text


def series(text):
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def cpu(proc):
    t = psutil.Process(proc.pid).cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def exporter_window(procs, urls, interval, window):
    """CPU s/min of each exporter while both are scraped every `interval` s for `window` s; the scrape times."""
    start = {name: cpu(p) for name, p in procs.items()}
    t0 = time.monotonic()
    texts, times = {}, {name: [] for name in urls}
    while time.monotonic() - t0 < window:
        tick = time.monotonic()
        for name, url in urls.items():
            seconds, texts[name] = scrape(url)
            times[name].append(seconds)
        time.sleep(max(interval - (time.monotonic() - tick), 0))
    elapsed = time.monotonic() - t0
    return {name: (cpu(p) - start[name]) * 60.0 / elapsed for name, p in procs.items()}, texts, times


def latencies(urls, n, times):
    """p50/p95 over the window's scrapes plus `n` more of each exporter at random moments (0-0.5 s apart), so
    that scrapes fall at every phase of process-tracker's scan loop, as Prometheus's do. process-exporter gets at
    most 3 more (each of its scrapes is a scan)."""
    import random

    rng = random.Random(14)
    out = {name: list(times[name]) for name in urls}
    for name, url in urls.items():
        for _ in range(n if name == "process-tracker" else min(n, 3)):
            time.sleep(rng.uniform(0.0, 0.5))
            out[name].append(scrape(url)[0])
    return {name: (statistics.median(v), sorted(v)[max(int(round(len(v) * 0.95)) - 1, 0)], len(v))
            for name, v in out.items()}


def bare_psutil_pass():
    for _ in psutil.process_iter(attrs=["ppid", "create_time", "cpu_times", "memory_info", "status"], ad_value=None):
        pass


def scan_figures(reps):
    scanner = Scanner()
    scanner.scan()
    scanner.scan()
    runs, analysed = {"scan": [], "psutil": [], "pure": []}, []
    fns = {"scan": lambda: analysed.append(scanner.scan().stats.analysed), "psutil": bare_psutil_pass,
           "pure": pure_python_pass}
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = time.process_time()
            fn()
            runs[name].append(time.process_time() - t0)
    figures = {name: statistics.median(v) for name, v in runs.items()}
    figures["analysed"] = (statistics.median(analysed), max(analysed))  # new or young: read through psutil
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=5.0, help="scan and scrape interval, s (production: 15)")
    parser.add_argument("--window", type=float, default=30.0, help="measurement window, s")
    parser.add_argument("--latency-scrapes", type=int, default=40)
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--pe-defaults", action="store_true", help="process-exporter with smaps and threads on")
    args = parser.parse_args(argv)
    if PE is None:
        print("prometheus-process-exporter is missing: run `bash dev/ensure-process-exporter.sh` as root (or "
              "`make bench`), which installs Debian's package")
        return 1
    load = os.getloadavg()
    tmp = tempfile.mkdtemp(prefix="pt-bench-exporter-")
    dss_dir = os.path.join(tmp, "dss_data")
    os.makedirs(os.path.join(dss_dir, "install-support"))  # what a DSS data directory holds
    os.makedirs(os.path.join(dss_dir, "bin"))
    with open(os.path.join(dss_dir, "bin", "env-default.sh"), "w") as f:
        f.write("export DIP_HOME=%s\n" % dss_dir)
    nurseries, lifeline = spawn(args.processes, dss_dir)
    born = time.monotonic()
    procs = {}
    try:
        procs, urls = start_exporters(tmp, args.interval, args.pe_defaults)
        young = Scanner().options.young_seconds
        time.sleep(max(young + 1 - (time.monotonic() - born), 0))  # steady state: nothing young to re-read
        cpu_per_min, texts, times = exporter_window(procs, urls, args.interval, args.window)
        lat = latencies(urls, args.latency_scrapes, times)
        figures = scan_figures(args.reps)
        host_processes = len(psutil.pids())
    finally:
        for p in procs.values():
            p.terminate()
            p.wait(timeout=20)
        os.close(lifeline)
        for n in nurseries:
            n.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d DSS-shaped sleepers (%s), %d processes on the host; scan and scrape every %.0f s for %.0f s%s" % (
        args.processes, "/".join(ROLES), host_processes, args.interval, args.window,
        "; process-exporter defaults (smaps, threads)" if args.pe_defaults else
        "; process-exporter -gather-smaps=false -threads=false"))
    print("command: .venv/bin/python bench/exporter.py %s" % " ".join(sys.argv[1:] if argv is None else argv))
    print("load average before: %.2f %.2f %.2f" % load)
    print("| exporter | CPU s per minute | scrape p50 | scrape p95 (of n) | series |")
    print("|---|---|---|---|---|")
    for name in procs:
        print("| %s | %.2f | %.1f ms | %.1f ms (%d) | %d |" % (name, cpu_per_min[name], lat[name][0] * 1000,
                                                             lat[name][1] * 1000, lat[name][2], series(texts[name])))
    ratio = cpu_per_min["process-tracker"] / cpu_per_min["process-exporter"]
    print("CPU ratio process-tracker / process-exporter: %.2f" % ratio)
    print("steady scan %.1f ms, bare psutil pass %.1f ms (ratio %.2f, target <= 0.75), pure-Python stat+status "
          "%.1f ms (ratio %.2f); processes read through psutil per scan (new or young): median %d, max %d" % (
              figures["scan"] * 1000, figures["psutil"] * 1000, figures["scan"] / figures["psutil"],
              figures["pure"] * 1000, figures["scan"] / figures["pure"], *figures["analysed"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
