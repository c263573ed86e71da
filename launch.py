"""Atelier's entry point: prepare the Python environment (requirements, checks, extensions' install.py), then start the
web UI. The work is done by modules.launch_utils; its names are re-exported here because extensions' install.py files
`import launch` for them (A1111's launch.py does the same). Importing this module has no side effects.
"""
import os
import shlex
import sys

from modules import launch_utils

args = launch_utils.args
python = launch_utils.python
git = launch_utils.git
index_url = launch_utils.index_url
dir_repos = launch_utils.dir_repos

commit_hash = launch_utils.commit_hash
git_tag = launch_utils.git_tag
run = launch_utils.run
is_installed = launch_utils.is_installed
repo_dir = launch_utils.repo_dir
run_pip = launch_utils.run_pip
git_clone = launch_utils.git_clone
list_extensions = launch_utils.list_extensions
run_extension_installer = launch_utils.run_extension_installer
run_extensions_installers = launch_utils.run_extensions_installers
parse_with_extension_flags = launch_utils.parse_with_extension_flags
prepare_environment = launch_utils.prepare_environment
start = launch_utils.start


def main():
    sys.argv += shlex.split(os.environ.get("COMMANDLINE_ARGS", ""))
    launch_utils.parse(sys.argv[1:], known_only=True)
    if not args.skip_prepare_environment:
        prepare_environment()
    if args.exit:
        print("Exiting because of --exit argument", flush=True)
        return
    parse_with_extension_flags(sys.argv[1:])
    start()


if __name__ == "__main__":
    main()
