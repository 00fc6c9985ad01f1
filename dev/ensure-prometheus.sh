#!/usr/bin/env bash
# The Prometheus tests need Debian's prometheus (which brings promtool). Install it when missing (as root).
# The package's own service is not used: tests start prometheus themselves on loopback with a temporary config.
set -euo pipefail
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != "0" ]; then
  echo "prometheus is missing: run 'apt-get install prometheus' as root (the Prometheus tests need prometheus and promtool)" >&2
  exit 1
fi
echo "installing Debian prometheus (Prometheus tests)..."
export DEBIAN_FRONTEND=noninteractive
# the package's postinst starts its service where a service manager runs; a policy-rc.d refusal keeps it off
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v prometheus >/dev/null && command -v promtool >/dev/null
