"""VAE choice (A1111's modules.sd_vae names): Automatic (a .vae.* file beside the checkpoint), None, or a models/VAE file."""
from __future__ import annotations

import os

from modules import hashes, paths_internal, sd_models, sd_models_config, sd_models_loader

VAE_EXTENSIONS = (".pt", ".ckpt", ".safetensors")
vae_dict: dict[str, str] = {}  # file name -> path


def vae_dirs(cmd_opts) -> list[str]:
    dirs = [os.path.join(paths_internal.models_path, "VAE"), os.path.join(paths_internal.models_path, "Stable-diffusion")]
    if getattr(cmd_opts, "vae_dir", None):
        dirs.append(cmd_opts.vae_dir)
    return dirs


def refresh_vae_list(cmd_opts=None) -> list[str]:
    """Scan the VAE folders again (cmd_opts: the command line's, which A1111's callers leave out)."""
    if cmd_opts is None:
        from modules.shared_cmd_options import cmd_opts
    vae_dict.clear()
    for root in vae_dirs(cmd_opts):
        for dirpath, _, files in sorted(os.walk(root)) if os.path.isdir(root) else []:
            for fn in sorted(files, key=str.lower):
                in_models_vae = not dirpath.startswith(os.path.join(paths_internal.models_path, "Stable-diffusion"))
                if fn.lower().endswith(VAE_EXTENSIONS) and (in_models_vae or ".vae." in fn.lower()):
                    vae_dict[fn] = os.path.join(dirpath, fn)
    return sorted(vae_dict, key=str.lower)


def find_vae_near_checkpoint(checkpoint_file: str) -> str | None:
    stem = os.path.splitext(checkpoint_file)[0]
    for ext in (".vae.safetensors", ".vae.pt", ".vae.ckpt"):
        if os.path.isfile(stem + ext):
            return stem + ext
    return None


def resolve_vae(checkpoint_file: str, choice: str, forced_path: str | None = None) -> str | None:
    """The VAE file to use, or None for the checkpoint's own."""
    if forced_path:
        return forced_path
    if choice in ("None", "", None):
        return None
    if choice == "Automatic":
        return find_vae_near_checkpoint(checkpoint_file)
    if choice not in vae_dict:
        raise ValueError(f"VAE not found: {choice}. Available: Automatic, None, {', '.join(sorted(vae_dict))}")
    return vae_dict[choice]


def load_vae_dict(filename: str, map_location: str | None = "cpu") -> dict:
    """A VAE file's tensors in LDM's layout without the `first_stage_model.` prefix, minus the training-only `loss` and
    `model_ema` entries (A1111's: what merging bakes in under first_stage_model.)."""
    sd, _ = sd_models_loader.read_state_dict(filename)
    prefix = sd_models_config.VAE if any(k.startswith(sd_models_config.VAE) for k in sd) else ""
    return {k[len(prefix):]: v.to(map_location) if map_location else v for k, v in sd.items()
            if k.startswith(prefix) and not k.startswith(("loss", "model_ema"))}


def apply_vae(model, vae_file: str | None) -> None:
    """Switch the model's VAE; external VAEs are built once and kept, the checkpoint's own is never overwritten."""
    if vae_file == model.loaded_vae_file:
        return
    if vae_file is None:
        model.vae, model.loaded_vae_file = model.base_vae, None
        return
    cache = model.extra.setdefault("vae_modules", {})
    if vae_file not in cache:
        vae = sd_models_loader.build_vae(load_vae_dict(vae_file, None), model.family.name, "")
        sd_models.place(vae, model.device, model.plan.dtype_vae)
        cache[vae_file] = vae
    model.vae, model.loaded_vae_file = cache[vae_file], vae_file


def vae_hash(vae_file: str) -> str | None:
    sha = hashes.sha256(vae_file, f"vae/{os.path.basename(vae_file)}")
    return sha[:10] if sha else None
