"""The import rule of ARCHITECTURE.md: no engine module imports gradio, fastapi, starlette, uvicorn or a modules.ui_*
module, checked in the source (every import statement, those inside functions too) and by importing each engine module
in a fresh interpreter."""
from __future__ import annotations

import ast
import fnmatch
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_PACKAGES = ("gradio", "fastapi", "starlette", "uvicorn")

# The faces: every module under modules/ that is not one of these is the engine.
FACES = (
    "modules/ui.py", "modules/ui_*.py",  # the page (modules/ui_scripts.py builds the scripts' controls)
    "modules/api/*",  # the HTTP API
    "modules/gradio_compat.py",  # Gradio 3 names for extensions' UIs
    "modules/extension_routes.py",  # the routes extensions add to the served app
)


def is_face(path: Path) -> bool:
    relative = path.relative_to(ROOT).as_posix()
    return any(fnmatch.fnmatchcase(relative, pattern) for pattern in FACES)


ENGINE = sorted(path for path in (ROOT / "modules").rglob("*.py") if not is_face(path))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def forbidden(name: str) -> bool:
    top, _, rest = name.partition(".")
    return top in FORBIDDEN_PACKAGES or (top == "modules" and rest.split(".")[0].startswith("ui_"))


def forbidden_imports(path: Path) -> list[str]:
    """`line: module` for every import of a forbidden module in the file, wherever the statement is."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] if forbidden(node.module) else [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found += [f"{node.lineno}: {name}" for name in names if forbidden(name)]
    return found


def test_the_engine_and_the_faces_are_both_there():
    names = {module_name(path) for path in ENGINE}
    assert {"modules.processing", "modules.scripts", "modules.scripts_postprocessing", "modules.shared"} <= names
    assert not names & {"modules.ui", "modules.ui_scripts", "modules.api.api", "modules.gradio_compat"}


@pytest.mark.parametrize("path", ENGINE, ids=module_name)
def test_engine_module_source_imports_no_face(path):
    assert forbidden_imports(path) == []


def test_the_static_check_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "sample.py"
    source.write_text("import os\n\ndef build():\n    import gradio as gr\n    from modules import ui_common, images\n"
                      "    from modules.ui_components import ToolButton\n    from starlette.requests import Request\n")
    assert forbidden_imports(source) == ["4: gradio", "5: modules.ui_common", "6: modules.ui_components",
                                         "7: starlette.requests"]


def test_importing_every_engine_module_loads_no_face():
    """All engine modules imported in one fresh interpreter: none of the forbidden packages may end up loaded."""
    program = (
        "import importlib, json, sys\n"
        f"for name in {json.dumps([module_name(path) for path in ENGINE])}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN_PACKAGES!r}"
        " or m.startswith(('modules.ui', 'modules.api')))))\n"
    )
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.splitlines()[-1]) == []
