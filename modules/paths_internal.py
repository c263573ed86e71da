"""Where Atelier's files live: the install dir, the data dir (--data-dir) and the models dir (--models-dir).

Only the standard library is imported here: launch.py reads these paths before any requirement is installed.
Other modules read `paths_internal.models_path` etc. at call time, so `configure()` takes effect everywhere.
"""
import argparse
import os
import sys

script_path = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
modules_path = os.path.join(script_path, "modules")
sd_configs_path = os.path.join(script_path, "configs")
extensions_builtin_dir = os.path.join(script_path, "extensions-builtin")
cwd = os.getcwd()


def normalized_filepath(filepath: str) -> str:
    """Absolute path with ~ expanded: the type of every path flag."""
    return os.path.abspath(os.path.expanduser(filepath))


def configure(data_dir: str | None = None, models_dir: str | None = None) -> None:
    """Point the data paths at `data_dir` (default: the install dir) and the models at `models_dir` (default: <data>/models)."""
    global data_path, models_path, extensions_dir, config_states_dir, default_output_dir, default_sd_model_file
    data_path = normalized_filepath(data_dir) if data_dir else script_path
    models_path = normalized_filepath(models_dir) if models_dir else os.path.join(data_path, "models")
    extensions_dir = os.path.join(data_path, "extensions")
    config_states_dir = os.path.join(data_path, "config_states")
    default_output_dir = os.path.join(data_path, "outputs")
    default_sd_model_file = os.path.join(script_path, "model.ckpt")


# allow_abbrev=False: a foreign command line (pytest's) must not have its options taken for ours
_dirs_parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
_dirs_parser.add_argument("--data-dir", type=str, default=None)
_dirs_parser.add_argument("--models-dir", type=str, default=None)


def configure_from_argv(argv: list[str]) -> None:
    """configure() from the --data-dir / --models-dir found in a command line, ignoring every other argument."""
    known, _ = _dirs_parser.parse_known_args(argv)
    configure(known.data_dir, known.models_dir)


configure_from_argv(sys.argv[1:])
