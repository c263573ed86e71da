"""Start to first image: a fresh Python process starts the engine (initialize(): settings, registry, model manager,
checkpoint load) and makes one SDXL image (1024x1024, 30 steps, Euler a); the wall time from launching the process
to the decoded image, with the phases on the way. The first image runs eagerly while the UNet compiles in the
background (modules.sd_unet_compile); the child then waits for the compiled graph and makes a second image on it.
Runs: cold (empty compile cache), warm (the cache of the cold run: a restart), and without torch.compile. The web
page and the HTTP server are left out (the same few seconds in each case).
    python bench/start_to_image.py --out DIR [--work DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(work: Path, compile_unet: bool, launched_at: float) -> None:
    """Prints one line `PHASES {json}`: seconds from the launch of the process to each phase's end."""
    phases = {}

    def mark(phase: str) -> None:
        phases[phase] = round(time.time() - launched_at, 2)

    sys.path.insert(0, str(ROOT))
    from modules import initialize, paths_internal, processing, sd_models
    from modules.shared_cmd_options import cmd_opts
    from modules.shared_options import opts

    mark("imports")
    paths_internal.configure(str(work), str(work / "models"))
    cmd_opts.no_hashing = True
    cmd_opts.no_torch_compile = not compile_unet
    initialize.initialize()
    opts.set("samples_save", False)
    mark("engine_started")

    def image() -> None:
        p = processing.StableDiffusionProcessingTxt2Img(prompt="a lighthouse at dusk", steps=30, width=1024, height=1024,
                                                        sampler_name="Euler a", cfg_scale=7.0, seed=1,
                                                        do_not_save_samples=True, do_not_save_grid=True)
        processing.process_images(p)

    for thread in threading.enumerate():  # initialize() loads the checkpoint in a thread of its own
        if thread.name == "load checkpoint":
            thread.join()
    mark("checkpoint_loaded")
    image()
    mark("first_image")
    model = sd_models.model_manager.current
    if model.sampling_unet is not model.unet:
        model.sampling_unet.wait()
        mark("compiled_graph_ready")
    started = time.time()
    image()
    phases["second_image_s"] = round(time.time() - started, 3)  # compiled where it compiles
    print("PHASES " + json.dumps(phases), flush=True)


def timed_start(work: Path, *flags: str) -> dict:
    launched_at = time.time()
    output = subprocess.run([sys.executable, __file__, "--child", "--work", str(work), "--launched-at", str(launched_at),
                             *flags], check=True, env=os.environ, stdout=subprocess.PIPE, text=True).stdout
    print(output, end="", flush=True)
    return json.loads(next(line for line in output.splitlines() if line.startswith("PHASES "))[len("PHASES "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--work", default="/tmp/atelier-bench")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-compile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--launched-at", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = Path(args.work)
    if args.child:
        child(work, compile_unet=not args.no_compile, launched_at=args.launched_at)
        return
    sys.path.insert(0, str(ROOT / "bench"))
    from sdxl_refiner import write_checkpoint

    checkpoint = work / "models" / "Stable-diffusion" / "sdxl_base_random.safetensors"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    if not checkpoint.exists():
        write_checkpoint("xl_base", checkpoint)
    checkpoint.read_bytes()  # in the page cache, as after any earlier start
    cache = work / "cache" / "torch_compile"
    shutil.rmtree(cache, ignore_errors=True)
    result = {"case": "SDXL base 1024x1024, 30 steps, Euler a, process start to decoded image"}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for run, flags in (("cold", ()), ("warm_restart", ()), ("no_compile", ("--no-compile",))):
        result[run] = timed_start(work, *flags)
        (out / "start_to_image.json").write_text(json.dumps(result, indent=2))  # kept if a later run times out
    import torch

    result["device"] = torch.cuda.get_device_name()
    (out / "start_to_image.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
