"""Command-line flags (A1111 names and defaults), cmd_opts refilled in place, and the data/models paths they move."""
import copy
import os

import pytest

from modules import cmd_args, paths, paths_internal, shared_cmd_options
from modules.shared_cmd_options import cmd_opts, parse

OBSOLETE_FLAGS = [
    "--always-batch-cond-uncond", "--unload-gfpgan", "--deepdanbooru", "--show-negative-prompt", "--gradio-queue",
    "--add-stop-route", "--enable-console-prompts",
]


@pytest.fixture(autouse=True)
def restore_command_line():
    """Tests parse their own command lines; put the process-wide cmd_opts and paths back afterwards."""
    saved_opts = dict(vars(cmd_opts))
    saved_dirs = (paths_internal.data_path, paths_internal.models_path)
    yield
    paths_internal.configure(*saved_dirs)
    cmd_args.parser.set_defaults(**cmd_args.path_defaults())
    vars(cmd_opts).clear()
    vars(cmd_opts).update(saved_opts)


def test_defaults_are_a1111s():
    defaults = cmd_args.parser.parse_args([])
    assert defaults.port is None
    assert defaults.precision == "autocast"
    assert defaults.filenames_max_length == 128
    assert defaults.timeout_keep_alive == 30
    assert defaults.max_batch_count == 16
    assert defaults.listen is False and defaults.share is False and defaults.api is False and defaults.nowebui is False
    assert defaults.ckpt_dir is None and defaults.vae_dir is None and defaults.vae_path is None
    assert defaults.gradio_auth is None and defaults.api_auth is None and defaults.device_id is None
    assert defaults.use_cpu == [] and defaults.styles_file == []
    assert defaults.models_dir is None


def test_path_defaults_follow_the_install_dir():
    paths_internal.configure()
    defaults = parse([])
    root = paths_internal.script_path
    assert defaults.data_dir == root
    assert defaults.ckpt == os.path.join(root, "model.ckpt")
    assert defaults.ui_settings_file == os.path.join(root, "config.json")
    assert defaults.ui_config_file == os.path.join(root, "ui-config.json")
    assert defaults.lora_dir == os.path.join(root, "models", "Lora")
    assert defaults.embeddings_dir == os.path.join(root, "models", "embeddings")
    assert defaults.hypernetwork_dir == os.path.join(root, "models", "hypernetworks")
    assert defaults.esrgan_models_path == os.path.join(root, "models", "ESRGAN")
    assert defaults.codeformer_models_path == os.path.join(root, "models", "Codeformer")


def test_values_parse_to_their_types():
    parsed = parse(["--port", "7000", "--precision", "half", "--device-id", "1", "--use-cpu", "SD", "esrgan",
                    "--gradio-auth", "a:b,c:d", "--styles-file", "a.csv", "--styles-file", "b.csv", "--listen"])
    assert parsed.port == 7000
    assert parsed.precision == "half"
    assert parsed.device_id == "1"
    assert parsed.use_cpu == ["sd", "esrgan"]
    assert parsed.gradio_auth == "a:b,c:d"
    assert parsed.styles_file == ["a.csv", "b.csv"]
    assert parsed.listen is True


def test_path_flags_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parsed = parse(["--ckpt-dir", "ckpts", "--vae-path", "~/v.safetensors"])
    assert parsed.ckpt_dir == str(tmp_path / "ckpts")
    assert parsed.vae_path == os.path.join(os.path.expanduser("~"), "v.safetensors")


def test_bad_values_are_rejected():
    with pytest.raises(SystemExit):
        parse(["--precision", "double"])
    with pytest.raises(SystemExit):
        parse(["--port", "seventy"])


def test_parse_refills_the_same_namespace():
    same = parse(["--port", "9000", "--api"])
    assert same is cmd_opts is shared_cmd_options.cmd_opts
    assert cmd_opts.port == 9000 and cmd_opts.api is True
    parse([])
    assert cmd_opts.port is None and cmd_opts.api is False  # nothing stale from the previous command line


def test_unknown_flags_strict_or_tolerated():
    with pytest.raises(SystemExit):
        parse(["--flag-from-an-extension"])
    parsed = parse(["--flag-from-an-extension", "--port", "8000"], known_only=True)
    assert parsed.port == 8000


def test_extensions_can_add_flags(monkeypatch):
    parser = copy.deepcopy(cmd_args.parser)  # the process-wide parser keeps only its own flags
    monkeypatch.setattr(shared_cmd_options, "parser", parser)
    parser.add_argument("--test-extension-flag", type=int, default=3)
    assert parse([]).test_extension_flag == 3
    assert parse(["--test-extension-flag", "5"]).test_extension_flag == 5
    monkeypatch.setattr(shared_cmd_options, "parser", cmd_args.parser)
    assert not hasattr(parse([]), "test_extension_flag")  # cmd_opts holds exactly what the current parser defines


def test_obsolete_flags_are_accepted():
    parsed = parse([*OBSOLETE_FLAGS, "--max-batch-count", "4", "--gradio-img2img-tool", "color-sketch",
                    "--gradio-inpaint-tool", "sketch", "--ngrok-region", "us", "--xformers"])
    assert parsed.deepdanbooru is True and parsed.xformers is True


def test_data_dir_moves_settings_and_models(tmp_path):
    parsed = parse(["--data-dir", str(tmp_path)])
    assert paths_internal.data_path == str(tmp_path)
    assert paths_internal.models_path == str(tmp_path / "models")
    assert parsed.data_dir == str(tmp_path)
    assert parsed.ui_settings_file == str(tmp_path / "config.json")
    assert parsed.lora_dir == str(tmp_path / "models" / "Lora")

    models = tmp_path / "elsewhere"
    parsed = parse(["--data-dir", str(tmp_path), "--models-dir", str(models)])
    assert paths_internal.models_path == str(models)
    assert parsed.lora_dir == str(models / "Lora")
    assert parsed.ui_settings_file == str(tmp_path / "config.json")


def test_explicit_path_flag_wins_over_data_dir(tmp_path):
    parsed = parse(["--data-dir", str(tmp_path), "--lora-dir", str(tmp_path / "mine")])
    assert parsed.lora_dir == str(tmp_path / "mine")


def test_configure_sets_every_path(tmp_path):
    paths_internal.configure(str(tmp_path))
    assert paths_internal.data_path == str(tmp_path)
    assert paths_internal.models_path == str(tmp_path / "models")
    assert paths_internal.extensions_dir == str(tmp_path / "extensions")
    assert paths_internal.config_states_dir == str(tmp_path / "config_states")
    assert paths_internal.default_output_dir == str(tmp_path / "outputs")

    paths_internal.configure(str(tmp_path), str(tmp_path / "m"))
    assert paths_internal.models_path == str(tmp_path / "m")

    paths_internal.configure()
    assert paths_internal.data_path == paths_internal.script_path
    assert paths_internal.models_path == os.path.join(paths_internal.script_path, "models")


def test_script_path_and_configs_are_in_the_repo():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert paths_internal.script_path == root
    assert paths_internal.sd_configs_path == os.path.join(root, "configs")
    assert paths_internal.extensions_builtin_dir == os.path.join(root, "extensions-builtin")


def test_pre_parse_reads_only_the_dir_flags(tmp_path):
    paths_internal.configure_from_argv(["-q", "tests/unit", "--data-dir", str(tmp_path), "--other", "x"])
    assert paths_internal.data_path == str(tmp_path)
    paths_internal.configure_from_argv(["--data", "abbreviated-is-not-ours"])
    assert paths_internal.data_path == paths_internal.script_path


def test_paths_module_reads_live_values(tmp_path):
    from modules.paths import models_path as before
    paths_internal.configure(str(tmp_path))
    assert paths.data_path == str(tmp_path)
    assert paths.models_path == str(tmp_path / "models")
    assert paths.script_path == paths_internal.script_path
    assert before != paths.models_path
    with pytest.raises(AttributeError):
        paths.not_a_path  # noqa: B018
