"""python -m dev.dss_simulator --port 0 --instance FILE [--fleet-pids JSON|FILE]

Prints `url=http://127.0.0.1:PORT` and `admin_key=KEY` (one line each), then serves until Ctrl-C or SIGTERM.
"""
import argparse
import json
import os
import signal
import sys
import threading

from .simulator import Simulator


def _json_arg(value):
    if os.path.isfile(value):
        with open(value) as f:
            return json.load(f)
    return json.loads(value)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dev.dss_simulator", description=__doc__.splitlines()[0])
    parser.add_argument("--instance", required=True, help="instance JSON file (schema in dev/README.md)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--fleet-pids", type=_json_arg, default=None,
                        help='JSON object {"<fleet process name>": pid}, or a file holding it')
    args = parser.parse_args(argv)
    with open(args.instance) as f:
        instance = json.load(f)
    sim = Simulator(instance, fleet_pids=args.fleet_pids)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with sim.serve(args.host, args.port) as url:
        print("url=%s" % url, flush=True)
        print("admin_key=%s" % sim.admin_key, flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
