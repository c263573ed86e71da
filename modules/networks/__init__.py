"""LoRA and LyCORIS networks (A1111's built-in Lora extension): files, layer types, weight patching, `<lora:...>`."""
import importlib
import sys

# A1111 loads its built-in Lora extension with that folder on sys.path, so extensions `import networks` (supermerger);
# these top-level names reach our modules of the same names.
A1111_TOP_LEVEL_NAMES = ("networks", "network", "network_lora", "network_hada", "network_lokr", "extra_networks_lora",
                         "lora")


def register_top_level_names() -> None:
    for name in A1111_TOP_LEVEL_NAMES:
        sys.modules.setdefault(name, importlib.import_module(f"{__name__}.{name}"))
