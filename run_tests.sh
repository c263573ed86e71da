#!/usr/bin/env bash
# The whole test suite from a fresh machine: Debian's Chromium for the browser tests, the venv (through webui.sh)
# with the app's and the tests' requirements, then pytest with this script's arguments. Exit code = pytest's.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# the browser tests drive /usr/bin/chromium through Playwright (never `playwright install`: no browser downloads)
if [[ ! -x /usr/bin/chromium ]]; then
    if [[ "$(id -u)" -ne 0 ]]; then
        echo "run_tests.sh: /usr/bin/chromium is missing; run as root, or install it first: sudo apt-get install -y chromium" >&2
        exit 1
    fi
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi

venv_dir="${venv_dir:-venv}"
venv_dir="$venv_dir" bash webui.sh --skip-torch-cuda-test --exit
"$venv_dir/bin/python" -m pip install --disable-pip-version-check -r requirements-test.txt
exec "$venv_dir/bin/python" -m pytest "$@"
