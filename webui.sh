#!/usr/bin/env bash
# Start Atelier: create or reuse the Python virtual environment, then run launch.py with this script's arguments.
# Settings for this script (python_cmd, venv_dir, COMMANDLINE_ARGS, ...) can be put in webui-user.sh next to it.

install_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$install_dir" || exit 1

if [[ -f webui-user.sh ]]; then
    # shellcheck source=/dev/null
    source ./webui-user.sh
fi

venv_dir="${venv_dir:-venv}"
LAUNCH_SCRIPT="${LAUNCH_SCRIPT:-launch.py}"
if [[ -z "${python_cmd:-}" ]]; then
    if command -v python3.11 >/dev/null 2>&1; then
        python_cmd="python3.11"
    else
        python_cmd="python3"
    fi
fi

if ! command -v "$python_cmd" >/dev/null 2>&1; then
    echo "webui.sh: '$python_cmd' was not found; install Python 3.11 (with its venv module) or set python_cmd in webui-user.sh" >&2
    exit 1
fi

# venv_dir=- runs in the Python given by python_cmd, without a virtual environment
if [[ "$venv_dir" != "-" ]]; then
    if [[ ! -x "$venv_dir/bin/python" ]]; then
        echo "Creating the Python virtual environment $venv_dir with $python_cmd"
        if ! "$python_cmd" -m venv "$venv_dir"; then
            echo "webui.sh: could not create the virtual environment; on Debian/Ubuntu install the python3-venv package" >&2
            exit 1
        fi
        "$venv_dir/bin/python" -m pip install --upgrade pip || echo "webui.sh: could not upgrade pip; going on with the venv's own" >&2
    fi
    # shellcheck source=/dev/null
    source "$venv_dir/bin/activate"
    python_cmd="$venv_dir/bin/python"
fi

# "Apply and restart" from the UI writes tmp/restart and exits: launch again while it is there
export SD_WEBUI_RESTART=tmp/restart
while true; do
    rm -f tmp/restart
    "$python_cmd" -u "$LAUNCH_SCRIPT" "$@"
    status=$?
    if [[ ! -f tmp/restart ]]; then
        exit "$status"
    fi
    echo "Restarting Atelier"
done
