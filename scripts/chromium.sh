#!/usr/bin/env bash
# Make sure Debian's `chromium` is installed: tests/integration/test_dashboard.py drives it headless (through the
# playwright package, which never downloads a browser of its own). Idempotent: when chromium
# runs, this exits at once; otherwise it installs the package with apt-get (as root, or with
# password-less sudo) and fails loudly, with the reason, if it cannot.
set -uo pipefail

BIN=/usr/bin/chromium
runs() { "$BIN" --version >/dev/null 2>&1; }

runs && exit 0

echo "chromium: $BIN is missing or does not run; installing Debian's chromium package" >&2
if [[ $(id -u) -eq 0 ]]; then
  as_root=()
elif sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "chromium: FAILED: installing it needs root: apt-get install chromium" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -q >/dev/null \
  && "${as_root[@]}" apt-get install -y -q --no-install-recommends chromium >/dev/null
if ! runs; then
  echo "chromium: FAILED: apt-get could not install a working $BIN (apt-get's errors are above)" >&2
  exit 1
fi
echo "chromium: installed $("$BIN" --version 2>/dev/null)"
