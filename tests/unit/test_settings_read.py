"""Every setting the Settings tab offers is read by some code; the settings Atelier does not offer still answer
extensions with A1111's default; the effects of settings implemented for this rule."""
from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

from modules import processing_img2img
from modules.options import LayeredOptions, OptionHTML
from modules.shared_options import options_templates, retired_options, saved_opts

REPO = Path(__file__).resolve().parents[2]
DECLARED_IN = REPO / "modules" / "shared_options.py"
READERS = [*(REPO / "modules").rglob("*.py"), *(REPO / "scripts").rglob("*.py"),
           *(REPO / "extensions-builtin").rglob("*.py"), *(REPO / "javascript").rglob("*.js")]

# Offered though no code of ours reads them, each for a reader outside this repository:
ALLOWED_UNREAD = {
    # A1111 API clients: the restrict_api settings that /sdapi/v1/options lists and refuses to change (403); the URL
    # fetching of input images they govern in A1111 is not built
    "api_enable_requests", "api_forbid_local_requests", "api_useragent",
    "sd_checkpoint_hash",  # A1111 API clients read it from /sdapi/v1/options (hidden section, never shown)
}


def read_count(key: str, sources: dict[Path, str]) -> int:
    """How often `key` appears as a whole word (opts.<key>, "key", opts.<key> in JS), the declaration not counted."""
    word = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(key)}(?![A-Za-z0-9_])")
    declaration = re.compile(rf"^\s*[\"']{re.escape(key)}[\"']\s*:", re.M)
    return sum(len(word.findall(text)) - (len(declaration.findall(text)) if path == DECLARED_IN else 0)
               for path, text in sources.items())


def test_every_offered_setting_is_read_somewhere():
    sources = {path: path.read_text(encoding="utf8") for path in READERS}
    # the settings Atelier declares (HTML entries are text only); those other tests' extensions add at run time and
    # Settings → Callbacks' prioritized_callbacks_<category> (read under that prefix: ui_settings.PRIORITY_PREFIX)
    # are not this repository's declarations
    declared = set(re.findall(r"^\s*[\"']([A-Za-z0-9_]+)[\"']\s*:\s*Option", DECLARED_IN.read_text(encoding="utf8"), re.M))
    offered = [key for key, info in options_templates.items() if key in declared and not isinstance(info, OptionHTML)]
    assert len(offered) > 150, len(offered)  # the declarations were found
    unread = [key for key in offered if key not in ALLOWED_UNREAD and read_count(key, sources) == 0]
    assert unread == [], f"settings offered that nothing reads (implement or retire them): {unread}"


def test_retired_settings_are_not_offered_and_answer_with_a1111s_default():
    assert not set(retired_options) & set(options_templates)
    assert saved_opts.img2img_color_correction is False and saved_opts.sd_unet == "Automatic"
    assert LayeredOptions(saved_opts).upcast_attn is False  # a job's view too
    assert "sd_unet" not in saved_opts.data  # neither saved nor sent as a setting


def test_img2img_background_color_fills_transparent_parts_of_the_init_image():
    rgba = Image.new("RGBA", (8, 8), (10, 20, 30, 0))
    rgba.paste((200, 100, 50, 255), (0, 0, 4, 8))
    p = SimpleNamespace(image_mask=None, init_images=[rgba], resize_mode=0, width=8, height=8, job=None,
                        override_settings={})
    for color, expected in (("#ffffff", (255, 255, 255)), ("#00ff00", (0, 255, 0))):
        saved = saved_opts.data.get("img2img_background_color")
        saved_opts.data["img2img_background_color"] = color
        try:
            pixels = np.asarray(processing_img2img.prepare_images(p).pixels[0])
        finally:
            if saved is None:
                saved_opts.data.pop("img2img_background_color", None)
            else:
                saved_opts.data["img2img_background_color"] = saved
        assert tuple(pixels[0, 7]) == expected and tuple(pixels[0, 0]) == (200, 100, 50)
