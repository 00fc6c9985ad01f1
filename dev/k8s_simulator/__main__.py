"""Serve a simulated Kubernetes API with DSS pods until Ctrl-C or SIGTERM.

    .venv/bin/python -m dev.k8s_simulator --port 0 --pods 5000 [--namespaces dss,dss-apps] [--no-metrics]
    url=http://127.0.0.1:41873
    token=reader-token
"""
import argparse
import signal
import sys
import threading

from .scenes import demo_pods, many_pods
from .simulator import K8sSimulator


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dev.k8s_simulator", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--pods", type=int, default=0, help="that many DSS pods (else the demo's few)")
    parser.add_argument("--namespaces", default="dss", help="comma-separated namespaces the pods spread over")
    parser.add_argument("--no-metrics", action="store_true", help="no metrics API (metrics-server absent)")
    args = parser.parse_args(argv)
    sim = K8sSimulator()
    if args.pods:
        many_pods(sim, args.pods, args.namespaces.split(","))
    else:
        demo_pods(sim)
    if args.no_metrics:
        sim.cluster.metrics_mode = "absent"
    print("url=%s" % sim.start(args.host, args.port))
    print("token=reader-token")
    sys.stdout.flush()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    sim.stop()


if __name__ == "__main__":
    main()
