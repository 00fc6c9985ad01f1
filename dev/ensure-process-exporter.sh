#!/usr/bin/env bash
# The exporter bench (bench/exporter.py) runs side by side with Debian's prometheus-process-exporter. Install it
# when missing (as root), like dev/ensure-prometheus.sh; `make bench` calls this, `make test` does not need it.
# The package's own service is not used: the bench starts process-exporter itself on loopback with its own config.
set -euo pipefail
if command -v prometheus-process-exporter >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != "0" ]; then
  echo "prometheus-process-exporter is missing: run 'apt-get install prometheus-process-exporter' as root" \
       "(bench/exporter.py compares the exporter with it)" >&2
  exit 1
fi
echo "installing Debian prometheus-process-exporter (bench/exporter.py)..."
export DEBIAN_FRONTEND=noninteractive
# where a service manager runs, the package's postinst would start its service: a policy-rc.d refusal keeps it off
policy=/usr/sbin/policy-rc.d
added_policy=
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && added_policy=1
fi
trap 'if [ -n "$added_policy" ]; then rm -f "$policy"; fi' EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus-process-exporter >/dev/null
command -v prometheus-process-exporter >/dev/null
