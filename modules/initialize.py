"""Start the engine services: settings, model registry, model manager and the first checkpoint."""
from __future__ import annotations

import logging
import os
import threading

from modules import extra_networks, paths_internal, processing, sd_models, sd_unet_compile, sd_vae, upscaler
from modules.networks import networks
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts

log = logging.getLogger(__name__)


def cache_dir() -> str:
    return os.environ.get("SD_WEBUI_CACHE_DIR") or os.path.join(paths_internal.data_path, "cache")


def initialize() -> None:
    opts.load(cmd_opts.ui_settings_file)
    titles = sd_models.list_models(cmd_opts)
    sd_vae.refresh_vae_list(cmd_opts)
    upscaler.refresh_upscalers(cmd_opts)
    networks.list_available_networks()
    extra_networks.register_default_extra_networks()
    sd_unet_compile.configure_cache(cache_dir())
    processing.setup_model_manager(cmd_opts, cache_dir())
    if not titles:
        log.warning("No checkpoint found. Put a .safetensors checkpoint into %s",
                    os.path.join(paths_internal.models_path, "Stable-diffusion"))
    elif not (cmd_opts.skip_load_model_at_start or cmd_opts.ui_debug_mode):
        threading.Thread(target=load_first_checkpoint, name="load checkpoint", daemon=True).start()


def load_first_checkpoint() -> None:
    """The checkpoint of --ckpt, else the one in settings, else the first; a failure is logged, the app serves on."""
    wanted = cmd_opts.ckpt if cmd_opts.ckpt and os.path.isfile(cmd_opts.ckpt) else opts.sd_model_checkpoint
    info = sd_models.get_closet_checkpoint_match(wanted) if wanted else None
    info = info or sd_models.checkpoint_registry.checkpoints_list[sd_models.checkpoint_registry.titles()[0]]
    try:
        model = sd_models.model_manager.get(info)
    except Exception as e:  # a bad file must not stop the server
        log.error("Could not load %s: %s", info.filename, e)
        return
    opts.set("sd_model_checkpoint", model.sd_checkpoint_info.title)
