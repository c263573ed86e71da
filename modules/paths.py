"""A1111's `modules.paths`: the path names of modules.paths_internal, read live so that a later configure() shows here too."""
from modules import paths_internal

__all__ = [
    "script_path", "data_path", "models_path", "extensions_dir", "extensions_builtin_dir", "config_states_dir",
    "default_output_dir", "default_sd_model_file", "sd_configs_path", "modules_path", "cwd",
]


def __getattr__(name: str):
    if name in __all__:
        return getattr(paths_internal, name)
    raise AttributeError(f"module 'modules.paths' has no attribute '{name}'")
