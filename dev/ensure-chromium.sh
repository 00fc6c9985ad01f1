#!/usr/bin/env bash
# Browser tests and the demo's screenshots need Debian's chromium. Install it when missing (as root).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != "0" ]; then
  echo "chromium is missing: run 'apt-get install chromium' as root (browser tests need /usr/bin/chromium)" >&2
  exit 1
fi
echo "installing Debian chromium (browser tests)..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
command -v chromium >/dev/null
