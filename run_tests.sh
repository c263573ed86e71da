#!/usr/bin/env bash
# The whole test suite from a fresh machine: Debian's Chromium for the browser tests, the venv (through webui.sh)
# with the app's and the tests' requirements, ruff over the code (ruff.toml), then pytest with this script's arguments.
# A ruff finding fails the run before the tests; otherwise the exit code is pytest's.
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
# an interrupted download fails pip as a whole, so it is tried again (as launch.py does)
for attempt in 1 2 3; do
    "$venv_dir/bin/python" -m pip install --disable-pip-version-check -r requirements-test.txt && break
    [[ $attempt -lt 3 ]] || exit 1
    echo "run_tests.sh: installing the test requirements failed (attempt $attempt of 3); trying again" >&2
done
"$venv_dir/bin/python" -m ruff check .
exec "$venv_dir/bin/python" -m pytest "$@"
