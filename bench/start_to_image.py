"""Start to first image: a fresh Python process starts the engine (initialize(): settings, registry, model manager,
checkpoint load) and makes one SDXL image (1024x1024, 30 steps, Euler a); the wall time from launching the process
to the decoded image. Runs: cold (empty compile cache), warm (the cache of the cold run: a restart), and without
torch.compile. The web page and the HTTP server are left out (the same few seconds in each case).
    python bench/start_to_image.py --out DIR [--work DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(work: Path, compile_unet: bool) -> None:
    sys.path.insert(0, str(ROOT))
    from modules import initialize, paths_internal, processing
    from modules.shared_cmd_options import cmd_opts
    from modules.shared_options import opts

    paths_internal.configure(str(work), str(work / "models"))
    cmd_opts.no_hashing = True
    cmd_opts.no_torch_compile = not compile_unet
    initialize.initialize()
    opts.set("samples_save", False)
    p = processing.StableDiffusionProcessingTxt2Img(prompt="a lighthouse at dusk", steps=30, width=1024, height=1024,
                                                    sampler_name="Euler a", cfg_scale=7.0, seed=1,
                                                    do_not_save_samples=True, do_not_save_grid=True)
    processing.process_images(p)


def timed_start(work: Path, *flags: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--child", "--work", str(work), *flags], check=True,
                   env=os.environ)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--work", default="/tmp/atelier-bench")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-compile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = Path(args.work)
    if args.child:
        child(work, compile_unet=not args.no_compile)
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
    result["cold_s"] = timed_start(work)
    result["warm_restart_s"] = timed_start(work)
    result["no_compile_s"] = timed_start(work, "--no-compile")
    import torch

    result["device"] = torch.cuda.get_device_name()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "start_to_image.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
