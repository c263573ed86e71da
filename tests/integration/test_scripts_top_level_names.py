"""An extension's script reaches A1111's built-in Lora extension by its top-level module names, as supermerger does: a
helper module of the extension runs `import networks` when the script imports it, and later `import lora` to list
`lora.available_loras`; both are ours."""
from __future__ import annotations

import sys

from modules import extensions, scripts
from modules.networks import A1111_TOP_LEVEL_NAMES
from modules.shared_options import opts
from tests.integration.test_scripts_engine import write_extension

HELPER = '''
import networks  # at import time, while the script loads


def lora_module():
    import lora  # later, from a button's handler
    return lora
'''

SCRIPT = '''
from modules import scripts

import names_helper


class Script(scripts.Script):
    def title(self):
        return "Top-level names"
'''


def test_extension_script_imports_networks_and_lora_by_top_level_name(tmp_path, monkeypatch):
    from modules.networks import lora, networks

    for name in A1111_TOP_LEVEL_NAMES:  # as in a fresh process: nothing registered them yet
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.delitem(sys.modules, "names_helper", raising=False)
    write_extension(tmp_path, "names", {"names_helper.py": HELPER, "scripts/names.py": SCRIPT})
    monkeypatch.setattr(scripts.paths_internal, "extensions_dir", str(tmp_path / "extensions"))
    monkeypatch.setitem(opts.data, "disabled_extensions", [])
    monkeypatch.setitem(opts.data, "disable_all_extensions", "none")
    try:
        extensions.list_extensions()
        scripts.load_scripts()
        assert "Top-level names" in [d.script_class().title() for d in scripts.scripts_data]
        helper = sys.modules["names_helper"]
        assert helper.networks is networks
        assert helper.lora_module() is lora
    finally:
        monkeypatch.undo()
        extensions.extensions.clear()
        scripts.load_scripts()
