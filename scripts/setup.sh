#!/usr/bin/env bash
# Creates .venv with the runtime lock and the tooling on top of it (requirements-dev.txt holds both). Safe to re-run: does nothing when the lock is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

# mysqlclient (pulled in by the MySQL provider) compiles against these Debian packages; the tests load
# the plugin's docs pages in headless Chromium, and the UI test drives it with chromedriver.
missing=()
for pkg in pkg-config libmariadb-dev gcc chromium chromium-driver; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"'

stamp=.venv/.requirements.sha256
want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
[ -x .venv/bin/uv ] || .venv/bin/pip install -q "uv==0.13.8"
.venv/bin/uv pip install --python .venv/bin/python -q -r requirements.txt -r requirements-dev.txt
echo "$want" > "$stamp"
echo "setup: .venv ready ($(.venv/bin/python -c 'import airflow; print("Airflow", airflow.__version__)'))"
