"""Shared set-up for engine tests: a model manager on the CPU over a tiny models tree, settings reset per test."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from modules import devices, paths_internal, processing, sd_models, sd_vae
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts

CPU = devices.DevicePlan(torch.device("cpu"), torch.float32, torch.float32)


def start_engine(models_dir: Path, data_dir: Path, limit: int = 3,
                 manager: sd_models.ModelManager | None = None) -> sd_models.ModelManager:
    """Settings afresh over `models_dir`; `manager` (one this made before, over the same tree) keeps its loaded models,
    so that a module's tests load each model once."""
    paths_internal.configure(str(data_dir), str(models_dir))
    for key in list(opts.data):
        del opts.data[key]
    opts.set("sd_checkpoints_limit", limit)
    opts.set("outdir_txt2img_samples", str(data_dir / "outputs" / "txt2img-images"))
    opts.set("outdir_txt2img_grids", str(data_dir / "outputs" / "txt2img-grids"))
    cmd_opts.ckpt_dir = None
    cmd_opts.ckpt = None
    sd_models.list_models(cmd_opts)
    sd_vae.refresh_vae_list(cmd_opts)
    sd_models.model_manager = manager or sd_models.ModelManager(CPU, data_dir / "cache", limit=limit)
    return sd_models.model_manager


def txt2img(checkpoint: str, **kwargs) -> processing.Processed:
    defaults = dict(prompt="a red cube", negative_prompt="blurry", steps=4, width=64, height=64, seed=1234,
                    sampler_name="Euler", cfg_scale=7.0, do_not_save_samples=True, do_not_save_grid=True)
    defaults.update(kwargs)
    opts.set("sd_model_checkpoint", checkpoint)
    return processing.process_images(processing.StableDiffusionProcessingTxt2Img(**defaults))


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)
