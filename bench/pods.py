"""The pod source's cost: listing 5,000 DSS pods with their metrics, page by page, with the real kubernetes client.

Setup: the simulated Kubernetes API (dev/k8s_simulator) in a separate process, seeded with N DSS pods (four
execution types, 50 nodes, requests, limits and metrics), so this process measures only the client side.
Measured (medians over --reps runs): wall time and CPU time of `pods.list_pods` (every page, the metrics list and
the records; the wall time includes the simulator's own work, in its process, on the same cores), its peak of
Python allocations (tracemalloc, a separate run) and the process's peak RSS; for page sizes 100, 500 (the
default) and 5,000. For reference, the same listing read through the client's model objects
(`list_namespaced_pod` without `_preload_content=False`) at the default page size: what the raw JSON saves.

    .venv/bin/python bench/pods.py [--pods 5000] [--reps 1] [--page-sizes 500,5000] [--models]

On a busy 2-core machine the wall time is mostly the simulator's (and the neighbours') CPU: read the CPU column.
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python-lib"))

from kubernetes import client  # noqa: E402

from process_tracker import pods  # noqa: E402


def start_cluster(count):
    proc = subprocess.Popen([sys.executable, "-m", "dev.k8s_simulator", "--pods", str(count)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip().split("=", 1)[1]
    proc.stdout.readline()
    return proc, url


def api_client(url):
    cfg = client.Configuration(host=url, api_key={"authorization": "reader-token"},
                               api_key_prefix={"authorization": "Bearer"})
    return client.ApiClient(cfg)


def measure(fn):
    """(result, wall seconds, CPU seconds, peak Python allocations in bytes): times from a plain run, the peak
    from a second run under tracemalloc (which slows Python down several times)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, wall, cpu, peak


def models_listing(api, page_size):
    core, items, token = client.CoreV1Api(api), [], None
    while True:
        kwargs = {"label_selector": pods.INSTALL_ID_LABEL, "limit": page_size}
        if token:
            kwargs["_continue"] = token
        page = core.list_pod_for_all_namespaces(**kwargs)
        items.extend(page.items)
        token = page.metadata._continue
        if not token:
            return items


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--page-sizes", default="500,5000")
    parser.add_argument("--models", action="store_true", help="also the model-objects reference (slow)")
    args = parser.parse_args()
    proc, url = start_cluster(args.pods)
    try:
        api = api_client(url)
        pods.list_pods(api, pods.PodSettings(page_size=500))  # warm-up (imports, connections)
        print("| page size | pods | requests | wall (median) | CPU (median) | peak Python allocations |")
        print("|---|---|---|---|---|---|")
        for page_size in [int(v) for v in args.page_sizes.split(",")]:
            runs = [measure(lambda ps=page_size: pods.list_pods(api, pods.PodSettings(page_size=ps)))
                    for _ in range(args.reps)]
            listing = runs[0][0]
            assert len(listing.pods) == args.pods and listing.memory_source == pods.MEMORY_FROM_METRICS, listing.notes
            pages = -(-args.pods // page_size)
            print("| %d | %d | %d + 1 metrics | %.2f s | %.2f s | %.1f MiB |" % (
                page_size, len(listing.pods), pages, statistics.median(r[1] for r in runs),
                statistics.median(r[2] for r in runs), statistics.median(r[3] for r in runs) / 2 ** 20))
        if args.models:
            runs = [measure(lambda: models_listing(api, 500)) for _ in range(args.reps)]
            print("| 500, model objects (reference: pods only, no metrics, no records) | %d | %d | %.2f s | %.2f s | "
                  "%.1f MiB |" % (len(runs[0][0]), -(-args.pods // 500), statistics.median(r[1] for r in runs),
                                  statistics.median(r[2] for r in runs),
                                  statistics.median(r[3] for r in runs) / 2 ** 20))
        print("peak RSS of this process: %.0f MiB" % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
