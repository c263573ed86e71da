"""The facade extensions import (A1111's modules.shared): references to the live services, no logic of its own."""
from modules import (
    files,
    job_context,
    memmon,
    paths_internal,
    sd_models,
    shared_items,
    shared_total_tqdm,
    styles,
)
from modules.options import OptionInfo, options_section  # noqa: F401  (extensions declare settings with these)
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import options_templates, opts, tab_names  # noqa: F401
from modules.shared_state import state  # noqa: F401

script_path = paths_internal.script_path
listfiles = files.listfiles
walk_files = files.walk_files
list_checkpoint_tiles = sd_models.checkpoint_tiles
total_tqdm = shared_total_tqdm.total_tqdm
mem_mon = memmon.mem_mon
latent_upscale_default_mode = "Latent"  # A1111's: hires fix's default upscaler
demo = None  # the page's gr.Blocks once webui has built it (extensions reach the page through it)


def __getattr__(name):
    # Live values, read at access time: paths (--data-dir may move them), the current checkpoint and its device.
    if name in ("data_path", "models_path"):
        return getattr(paths_internal, name)
    if name == "sd_upscalers":
        from modules import upscaler

        return upscaler.sd_upscalers
    if name == "face_restorers":
        from modules import face_restoration

        return face_restoration.face_restorers
    if name == "sd_model":  # the running job's model, else the shared manager's
        manager = job_context.model_manager()
        return manager.current if manager else None
    if name == "refresh_checkpoints":
        return lambda: sd_models.list_models(cmd_opts)
    if name == "prompt_styles":  # the styles database the UI uses, following --styles-file and the data dir
        return styles.prompt_styles()
    if name == "hypernetworks":
        return shared_items.hypernetworks()
    if name == "latent_upscale_modes":
        return shared_items.latent_upscale_modes()
    if name == "interrogator":  # A1111's CLIP interrogator, imported when first asked for (it brings transformers)
        from modules import interrogate

        return interrogate.interrogator
    if name == "device":
        manager = job_context.model_manager()
        return manager.plan.device if manager else None
    raise AttributeError(f"module 'modules.shared' has no attribute {name!r}")
