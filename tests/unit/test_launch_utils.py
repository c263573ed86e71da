"""modules.launch_utils under A1111's names (launch.py re-exports them), as adetailer and supermerger use them:
launch.args, git_tag(), commit_hash(); and our pins, read from requirements.txt and the installed packages."""
import importlib.metadata
import shutil
import subprocess
import sys

import pytest

import launch
from modules import launch_utils, paths_internal, pinned_requirements
from modules.shared_cmd_options import cmd_opts
from tests.fixtures.extensions import GitRepo


@pytest.fixture
def own_checkout(monkeypatch):
    """Point "Atelier's checkout" somewhere else; git_tag/commit_hash are cached, so the cache is emptied around it."""
    def at(path):
        monkeypatch.setattr(paths_internal, "script_path", str(path))
        launch_utils.git_tag.cache_clear()
        launch_utils.commit_hash.cache_clear()
    yield at
    launch_utils.git_tag.cache_clear()
    launch_utils.commit_hash.cache_clear()


def test_launch_re_exports_launch_utils():
    from modules import launch_utils as imported  # supermerger: `from modules import launch_utils`

    assert imported is launch_utils
    assert launch.args is launch_utils.args is cmd_opts  # adetailer: `launch.args.skip_install`
    for name in ("commit_hash", "git_tag", "run", "is_installed", "repo_dir", "run_pip", "git_clone", "python", "index_url",
                 "dir_repos", "list_extensions", "run_extension_installer", "prepare_environment", "start"):
        assert getattr(launch, name) is getattr(launch_utils, name), name


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_tag_and_commit_hash_of_our_checkout(tmp_path, own_checkout):
    repo = GitRepo(tmp_path / "atelier")
    first = repo.commit({"README.md": "one"})
    own_checkout(repo.path)
    assert launch.commit_hash() == first
    assert launch.git_tag() == "<none>"  # no tag yet

    repo.git("tag", "v1.2.0")
    second = repo.commit({"README.md": "two"})
    own_checkout(repo.path)
    assert launch.commit_hash() == second
    assert launch.git_tag() == f"v1.2.0-1-g{second[:7]}"
    # supermerger reads the version out of it, falling back when it cannot
    assert int(launch_utils.git_tag().split("-", 1)[0].replace("v", "").replace(".", "")) == 120
    assert launch_utils.git_tag()[0:2] != "f2"  # supermerger's test for Forge


def test_outside_a_git_checkout_both_are_none(tmp_path, own_checkout):
    own_checkout(tmp_path)
    assert launch_utils.commit_hash() == "<none>"
    assert launch_utils.git_tag() == "<none>"


def test_adetailer_reads_skip_install_from_launch_args():
    code = "import launch\ntry:\n    skip_install = launch.args.skip_install\nexcept Exception:\n    skip_install = 'broken'\nprint(skip_install)"
    result = subprocess.run([sys.executable, "-c", code], cwd=paths_internal.script_path, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"  # install.py runs only when installs are not skipped


def test_pins_follow_requirements_txt_and_the_installed_dependencies(tmp_path):
    requirements = tmp_path / "requirements.txt"
    gradio = importlib.metadata.version("gradio")
    requirements.write_text(f"# ours\ngradio=={gradio}  # the UI\nnot-a-requirement ===\n", encoding="utf8")
    pins = pinned_requirements.pins(str(requirements))
    assert str(pins["gradio"]) == f"gradio=={gradio}" and pins["gradio"].required_by == ["requirements.txt"]
    assert "gradio" in pins["pydantic"].required_by and "fastapi" in pins["pydantic"].required_by  # two levels down
    assert pinned_requirements.drifts(pins) == []

    constraints = pinned_requirements.write_constraints(pins, str(tmp_path / "tmp" / "c.txt"))
    lines = pinned_requirements.requirement_lines(constraints)
    assert f"gradio=={gradio}" in lines and str(pins["pydantic"]) in lines
    assert list((tmp_path / "tmp").iterdir()) == [tmp_path / "tmp" / "c.txt"]  # written whole, nothing left beside it


def test_conflicts_in_pip_output():
    output = (
        "ERROR: Cannot install mediapipe==0.10.14 and pydantic<=1.10.17 because these package versions have conflicting "
        "dependencies.\n\nThe conflict is caused by:\n"
        "    The user requested pydantic<=1.10.17\n"
        "    The user requested (constraint) pydantic<=3.0,>=2.0\n"
        "    mediapipe 0.10.14 depends on numpy<2\n"
        "    dynamicprompts[magicprompt] 0.31.0 depends on transformers<5; extra == \"magicprompt\"\n"
        "    The user requested (constraint) transformers==5.24.0\n"
        "    The user requested (constraint) numpy==2.4.6\n"
        "\nTo fix this you could try to:\n"
    )
    found = pinned_requirements.conflicts(output)
    assert [(c.package, c.asked, c.pin) for c in found] == [
        ("pydantic", ["pydantic<=1.10.17"], "pydantic<=3.0,>=2.0"),
        ("numpy", ["numpy<2 (needed by mediapipe 0.10.14)"], "numpy==2.4.6"),
        ("transformers", ["transformers<5 (needed by dynamicprompts[magicprompt] 0.31.0)"], "transformers==5.24.0"),
    ]
    found = found[:2]
    pins = {"numpy": pinned_requirements.Pin("numpy", "==2.4.6", ["requirements.txt", "scipy"])}
    assert pinned_requirements.explain(found, pins) == (
        "pydantic<=1.10.17 conflicts with Atelier's pydantic<=3.0,>=2.0. "
        "numpy<2 (needed by mediapipe 0.10.14) conflicts with Atelier's numpy==2.4.6 (needed by requirements.txt, scipy)")
    assert pinned_requirements.conflicts("ERROR: No matching distribution found for pydantic<=1.10.17") == []
