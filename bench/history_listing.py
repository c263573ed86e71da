"""Listing 10,000 tiny PNGs in the image history (modules/image_history.py): the first scan (every infotext read),
a restart (the index read from disk, a stat per file) and a rescan in the same process. CPU only.

    python bench/history_listing.py [count]
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from PIL import Image, PngImagePlugin  # noqa: E402

from modules import image_history, paths_internal  # noqa: E402


def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as root:
        paths_internal.data_path = os.path.join(root, "data")
        folder = os.path.join(root, "outputs", "txt2img-images")
        os.makedirs(folder)
        pixel = Image.new("RGB", (8, 8), (90, 30, 160))
        for n in range(count):
            meta = PngImagePlugin.PngInfo()
            meta.add_text("parameters", f"prompt number {n}, a red cube\nSteps: 20, Sampler: Euler a, Seed: {n}, "
                                        f"Size: 512x512, Model: model{n % 7}")
            pixel.save(os.path.join(folder, f"{n:05d}-{n}.png"), pnginfo=meta)
        folders = lambda: [("txt2img", folder)]  # noqa: E731

        def timed(label, action):
            start = time.perf_counter()
            result = action()
            print(f"{label}: {time.perf_counter() - start:.3f} s")
            return result

        history = image_history.ImageHistory(folders)
        listed = timed(f"first scan of {count} images (infotext read)", history.images)
        assert len(listed) == count
        timed("restart: index from disk + rescan", image_history.ImageHistory(folders).images)
        timed("rescan in the same process", history.images)
        timed("filter 'number 99' + model5", lambda: history.search("number 99", model="model5"))
        timed("100 thumbnails (made)", lambda: [history.thumbnail(i) for i in listed[:100]])
        timed("100 thumbnails (cached)", lambda: [history.thumbnail(i) for i in listed[:100]])


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
