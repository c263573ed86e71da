"""Atelier's command-line flags: A1111's names, defaults and meanings. Extensions add theirs in preload.py.

Only the standard library is imported: `python launch.py --help` must answer before any heavy import.
"""
import argparse
import os

from modules import paths_internal
from modules.paths_internal import normalized_filepath


def path_defaults() -> dict[str, str]:
    """Defaults of the path flags, which follow --data-dir and --models-dir (applied again by shared_cmd_options.parse)."""
    data, models = paths_internal.data_path, paths_internal.models_path
    return {
        "data_dir": data,
        "ckpt": paths_internal.default_sd_model_file,
        "embeddings_dir": os.path.join(models, "embeddings"),
        "hypernetwork_dir": os.path.join(models, "hypernetworks"),
        "lora_dir": os.path.join(models, "Lora"),
        "esrgan_models_path": os.path.join(models, "ESRGAN"),
        "realesrgan_models_path": os.path.join(models, "RealESRGAN"),
        "swinir_models_path": os.path.join(models, "SwinIR"),
        "dat_models_path": os.path.join(models, "DAT"),
        "hat_models_path": os.path.join(models, "HAT"),
        "gfpgan_models_path": os.path.join(models, "GFPGAN"),
        "codeformer_models_path": os.path.join(models, "Codeformer"),
        "ui_settings_file": os.path.join(data, "config.json"),
        "ui_config_file": os.path.join(data, "ui-config.json"),
    }


parser = argparse.ArgumentParser(
    prog="launch.py",
    description="Atelier: a Stable Diffusion web UI. Flags can also be given in the COMMANDLINE_ARGS environment variable.",
)

group = parser.add_argument_group("server")
group.add_argument("--listen", action="store_true", help="listen on 0.0.0.0 so that other computers on the network can connect; blocks extension installs unless --enable-insecure-extension-access")
group.add_argument("--server-name", type=str, default=None, help="host name or address to listen on (counts as non-local, like --listen)")
group.add_argument("--port", type=int, default=None, help="port to listen on (default 7860, or 7861 with --nowebui)")
group.add_argument("--share", action="store_true", help="ask Gradio for a public *.gradio.live link to the UI")
group.add_argument("--gradio-auth", type=str, default=None, help='UI login as "username:password", several separated by commas')
group.add_argument("--gradio-auth-path", type=normalized_filepath, default=None, help="file holding --gradio-auth style logins, one or more per line")
group.add_argument("--gradio-allowed-path", action="append", default=[], help="a folder whose files the page may fetch through file= URLs, beside the extension and output folders; repeatable")
group.add_argument("--subpath", type=str, default=None, help="serve under this URL path, for a reverse proxy (e.g. /atelier)")
group.add_argument("--timeout-keep-alive", type=int, default=30, help="seconds uvicorn keeps idle HTTP connections open")
group.add_argument("--autolaunch", action="store_true", help="open the UI in the system's default browser at start")
group.add_argument("--theme", type=str, default=None, help="force the UI theme: light or dark")

group = parser.add_argument_group("API")
group.add_argument("--api", action="store_true", help="serve the REST API (/sdapi/v1/..., docs at /docs) next to the UI")
group.add_argument("--nowebui", action="store_true", help="serve only the REST API, without the UI (default port 7861)")
group.add_argument("--api-auth", type=str, default=None, help='HTTP Basic auth for the API as "username:password", several separated by commas')
group.add_argument("--api-log", action="store_true", help="log every API request")
group.add_argument("--api-server-stop", action="store_true", help="enable /sdapi/v1/server-kill, server-restart and server-stop")
group.add_argument("--cors-allow-origins", type=str, default=None, help="comma-separated origins allowed by CORS, e.g. http://localhost:3000")
group.add_argument("--cors-allow-origins-regex", type=str, default=None, help="regular expression of origins allowed by CORS")
group.add_argument("--skip-load-model-at-start", action="store_true", help="do not load a checkpoint at start; load it with the first generation")

group = parser.add_argument_group("paths")
group.add_argument("--data-dir", type=normalized_filepath, help="where user data lives: settings, outputs, extensions, models (default: the install dir)")
group.add_argument("--models-dir", type=normalized_filepath, default=None, help="where the models folders live (default: models/ in the data dir)")
group.add_argument("--ckpt", type=normalized_filepath, help="a checkpoint file to add to the checkpoint list and load at start")
group.add_argument("--ckpt-dir", type=normalized_filepath, default=None, help="a further directory scanned for checkpoints, besides models/Stable-diffusion")
group.add_argument("--vae-dir", type=normalized_filepath, default=None, help="directory of VAE files (default: models/VAE)")
group.add_argument("--vae-path", type=normalized_filepath, default=None, help="a VAE file to use, overriding the setting and per-model choices")
group.add_argument("--lora-dir", type=normalized_filepath, help="directory of LoRA files (default: models/Lora)")
group.add_argument("--controlnet-dir", type=normalized_filepath, default=None, help="a further directory scanned for ControlNet models, besides models/ControlNet")
group.add_argument("--embeddings-dir", type=normalized_filepath, help="directory of textual-inversion embeddings (default: models/embeddings)")
group.add_argument("--hypernetwork-dir", type=normalized_filepath, help="directory of hypernetworks (default: models/hypernetworks)")
group.add_argument("--textual-inversion-templates-dir", type=normalized_filepath, help="directory of prompt templates for training (default: textual_inversion_templates)")
group.add_argument("--esrgan-models-path", type=normalized_filepath, help="directory of ESRGAN upscaler models (default: models/ESRGAN)")
group.add_argument("--realesrgan-models-path", type=normalized_filepath, help="directory of RealESRGAN upscaler models (default: models/RealESRGAN)")
group.add_argument("--swinir-models-path", type=normalized_filepath, help="directory of SwinIR upscaler models (default: models/SwinIR)")
group.add_argument("--dat-models-path", type=normalized_filepath, help="directory of DAT upscaler models (default: models/DAT)")
group.add_argument("--hat-models-path", type=normalized_filepath, help="directory of HAT upscaler models (default: models/HAT)")
group.add_argument("--gfpgan-models-path", type=normalized_filepath, help="directory of GFPGAN face-restoration models (default: models/GFPGAN)")
group.add_argument("--codeformer-models-path", type=normalized_filepath, help="directory of CodeFormer face-restoration models (default: models/Codeformer)")
group.add_argument("--styles-file", type=str, action="append", default=[], help="prompt styles CSV file, repeatable, wildcards allowed (default: styles.csv in the data dir)")
group.add_argument("--ui-settings-file", type=normalized_filepath, help="settings file (default: config.json in the data dir)")
group.add_argument("--ui-config-file", type=normalized_filepath, help="UI defaults file (default: ui-config.json in the data dir)")
group.add_argument("--localizations-dir", type=normalized_filepath, default=os.path.join(paths_internal.script_path, "localizations"), help="directory of page translations, localizations/*.json (extensions add theirs)")

group = parser.add_argument_group("precision and memory")
group.add_argument("--no-half", action="store_true", help="keep the model in 32-bit floats (more memory, avoids fp16 NaNs)")
group.add_argument("--no-half-vae", action="store_true", help="keep the VAE in 32-bit floats (avoids black SDXL images)")
group.add_argument("--precision", type=str, choices=["full", "half", "autocast"], default="autocast", help="evaluate at this precision: full = fp32, half = fp16 without casts, autocast = let torch choose per op")
group.add_argument("--upcast-sampling", action="store_true", help="fp16 weights, upcast to fp32 during sampling (for cards that need --no-half, with less memory)")
group.add_argument("--medvram", action="store_true", help="keep only the running part of the model (text encoder, UNet or VAE) on the GPU")
group.add_argument("--medvram-sdxl", action="store_true", help="--medvram for SDXL models only")
group.add_argument("--lowvram", action="store_true", help="like --medvram, and also move the UNet to the GPU one block at a time (very slow, least memory)")
group.add_argument("--upcast-fp8", action="store_true", help="load fp8 weights (flux1-dev-fp8, t5xxl_fp8) in the compute precision instead of keeping them fp8 and upcasting each layer as it runs (more memory, slightly faster)")
group.add_argument("--lowram", action="store_true", help="load checkpoint weights straight to VRAM instead of RAM")
group.add_argument("--device-id", type=str, default=None, help="index of the CUDA device to use, e.g. 1")
group.add_argument("--use-cpu", type=str.lower, nargs="+", default=[], help="run these parts on the CPU: all, sd, interrogate, gfpgan, esrgan, codeformer")
group.add_argument("--opt-sdp-attention", action="store_true", help="prefer PyTorch scaled-dot-product attention")
group.add_argument("--opt-channelslast", action="store_true", help="use the channels-last memory format for the UNet")
group.add_argument("--no-torch-compile", action="store_true", help="do not torch.compile the UNet on CUDA (it compiles in the background, about 1.5 min per new image size, cached on disk, and then makes sampling about 1.5x faster)")
group.add_argument("--xformers", action="store_true", help="accepted for old command lines; not needed: Atelier uses PyTorch's own attention")

group = parser.add_argument_group("start-up and installation")
group.add_argument("--skip-install", action="store_true", help="do not pip install requirements or run extensions' install.py")
group.add_argument("--skip-prepare-environment", action="store_true", help="skip every start-up check and install")
group.add_argument("--skip-torch-cuda-test", action="store_true", help="do not check whether torch can use a CUDA GPU")
group.add_argument("--skip-python-version-check", action="store_true", help="do not warn about an untested Python version")
group.add_argument("--skip-version-check", action="store_true", help="with --skip-install, do not warn about installed libraries that differ from requirements.txt")
group.add_argument("--exit", action="store_true", help="stop after preparing the environment, without starting the UI")
group.add_argument("--demo", action="store_true", help="Atelier only: make a tiny random-weight demo checkpoint so the UI works without downloading a model (its images are noise)")
group.add_argument("--ui-debug-mode", action="store_true", help="start the UI without loading a model")
group.add_argument("--loglevel", type=str, default=None, help="logging level: DEBUG, INFO, WARNING, ERROR or CRITICAL")
group.add_argument("--disable-console-progressbars", action="store_true", help="no progress bars in the console")

group = parser.add_argument_group("extensions and settings")
group.add_argument("--enable-insecure-extension-access", action="store_true", help="allow installing and updating extensions from the UI even with --listen, --share or --server-name")
group.add_argument("--disable-all-extensions", action="store_true", help="load no extensions at all")
group.add_argument("--disable-extra-extensions", action="store_true", help="load only the built-in extensions")
group.add_argument("--freeze-settings", action="store_true", help="refuse every change to the settings")
group.add_argument("--freeze-settings-in-sections", type=str, default=None, help="refuse changes to the settings of these comma-separated section ids")
group.add_argument("--freeze-specific-settings", type=str, default=None, help="refuse changes to these comma-separated setting keys")
group.add_argument("--hide-ui-dir-config", action="store_true", help="hide the directory settings and refuse changes to them")

group = parser.add_argument_group("files, models and safety")
group.add_argument("--no-hashing", action="store_true", help="do not compute sha256 hashes of checkpoints")
group.add_argument("--disable-safe-unpickle", action="store_true", help="allow .ckpt/.pt files to run arbitrary pickled code (unsafe)")
group.add_argument("--disable-nan-check", action="store_true", help="do not stop a generation whose UNet output is all NaN")
group.add_argument("--no-download-sd-model", action="store_true", help="never download a checkpoint when none is found")
group.add_argument("--no-prompt-history", action="store_true", help="do not write the last generation's parameters to params.txt")
group.add_argument("--filenames-max-length", type=int, default=128, help="longest file name, in bytes, for saved images")
group.add_argument("--unix-filenames-sanitization", action="store_true", help="only replace / in file names, not the characters Windows forbids")

group = parser.add_argument_group("obsolete (accepted so old command lines still work; they do nothing)")
group.add_argument("--max-batch-count", type=int, default=16, help="does nothing")
group.add_argument("--always-batch-cond-uncond", action="store_true", help="does nothing; see the batch_cond_uncond setting")
group.add_argument("--unload-gfpgan", action="store_true", help="does nothing")
group.add_argument("--deepdanbooru", action="store_true", help="does nothing")
group.add_argument("--show-negative-prompt", action="store_true", help="does nothing")
group.add_argument("--gradio-img2img-tool", type=str, help="does nothing")
group.add_argument("--gradio-inpaint-tool", type=str, help="does nothing")
group.add_argument("--gradio-queue", action="store_true", help="does nothing; the Gradio queue is always on")
group.add_argument("--add-stop-route", action="store_true", help="does nothing")
group.add_argument("--enable-console-prompts", action="store_true", help="does nothing")
group.add_argument("--ngrok-region", type=str, default="", help="does nothing")

parser.set_defaults(**path_defaults())
