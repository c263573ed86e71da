"""The parsed command line, `cmd_opts`: one Namespace object that parse() refills, so every reference to it stays valid."""
import argparse

from modules import paths_internal
from modules.cmd_args import parser, path_defaults

# defaults until startup calls parse(): importing this module never reads or rejects the process's command line
cmd_opts = parser.parse_args([])


def parse(argv: list[str], known_only: bool = False) -> argparse.Namespace:
    """Parse `argv` into cmd_opts (in place) and point paths_internal at its --data-dir / --models-dir.

    known_only=True ignores unknown flags: launch.py parses before extensions' preload.py has added theirs.
    """
    paths_internal.configure_from_argv(argv)
    parser.set_defaults(**path_defaults())
    parsed = parser.parse_known_args(argv)[0] if known_only else parser.parse_args(argv)
    vars(cmd_opts).clear()
    vars(cmd_opts).update(vars(parsed))
    return cmd_opts
