"""What live previews cost a job: SDXL base, 1024x1024, 30 steps, Euler a, timed without previews and with a poller
that does what the page does every `live_preview_refresh_period` (take the newest latent the loop kept, decode it with
the chosen method, encode it as PNG), for Approx cheap and Full. On CUDA the UNet's compiled graph is waited for first.
Prints seconds per image and the ratio to no preview (target: at most 1.03), and writes JSON.
    python bench/preview_cost.py --out DIR [--work DIR] [--runs 5] [--period-ms 1000] [--checkpoint NAME --size 64 --steps 4]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sdxl_refiner import random_sdxl_base  # noqa: E402

from modules import live_preview, processing, sd_models  # noqa: E402
from modules.shared_cmd_options import cmd_opts  # noqa: E402
from modules.shared_options import opts  # noqa: E402
from modules.shared_state import state  # noqa: E402


def poll_previews(stop: threading.Event, period: float) -> None:
    """The page's progress poll: a new latent kept by the loop is decoded and encoded as the preview PNG."""
    last = None
    while not stop.wait(period):
        latent = state.current_latent
        if latent is None or latent is last:
            continue
        last = latent
        state.do_set_current_image()
        if state.current_image is not None:
            state.current_image.save(io.BytesIO(), format="PNG")


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def seconds_per_image(job, runs: int, method: str | None, period: float) -> float:
    """Median seconds of `job` with previews by `method` (None: previews off)."""
    opts.set("live_previews_enable", method is not None)
    opts.set("show_progress_type", method or live_preview.CHEAP)
    times = []
    for _ in range(runs):
        stop = threading.Event()
        poller = threading.Thread(target=poll_previews, args=(stop, period), daemon=True)
        poller.start()
        synchronize()
        started = time.perf_counter()
        job()
        synchronize()
        times.append(time.perf_counter() - started)
        stop.set()
        poller.join()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--work", default="/tmp/atelier-bench")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--period-ms", type=int, default=1000, help="the page's poll period (live_preview_refresh_period)")
    parser.add_argument("--checkpoint", help="an existing checkpoint under WORK/models (default: the random full-size SDXL)")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    work = Path(args.work)
    if args.checkpoint:
        from modules import paths_internal

        paths_internal.configure(str(work), str(work / "models"))
        cmd_opts.no_hashing = True
        opts.set("samples_save", False)
        sd_models.list_models(cmd_opts)
        model = processing.setup_model_manager(cmd_opts, work / "cache").get(
            sd_models.get_closet_checkpoint_match(args.checkpoint))
        opts.set("sd_model_checkpoint", model.sd_checkpoint_info.title)
    else:
        model = random_sdxl_base(work)
    state.preview_decoder = live_preview.decode_preview  # as webui sets it

    def job():
        p = processing.StableDiffusionProcessingTxt2Img(prompt="a lighthouse at dusk", steps=args.steps, width=args.size,
                                                        height=args.size, sampler_name="Euler a", cfg_scale=7.0, seed=1,
                                                        do_not_save_samples=True, do_not_save_grid=True)
        processing.process_images(p)

    job()  # warm-up; on CUDA it also starts compiling the UNet in the background
    if model.sampling_unet is not model.unet:
        model.sampling_unet.wait()
        job()
    period = args.period_ms / 1000
    result = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "size": args.size,
              "steps": args.steps, "period_ms": args.period_ms, "show_progress_every_n_steps":
              opts.show_progress_every_n_steps, "compiled": model.sampling_unet is not model.unet, "s_per_image": {}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for label, method in (("off", None), ("approx_cheap", live_preview.CHEAP), ("full", live_preview.FULL)):
        result["s_per_image"][label] = seconds_per_image(job, args.runs, method, period)
        (out / "preview_cost.json").write_text(json.dumps(result, indent=2))
        print(f"{label:>13}: {result['s_per_image'][label]:.3f} s/image", flush=True)
    base = result["s_per_image"]["off"]
    result["ratio"] = {label: seconds / base for label, seconds in result["s_per_image"].items()}
    (out / "preview_cost.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result["ratio"], indent=2))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
