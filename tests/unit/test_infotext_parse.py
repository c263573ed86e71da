"""The infotext reader: A1111's parse_generation_parameters on every shape users share (reference §3.4, §3.5),
the same texts through PNG (tEXt, iTXt), JPEG and WebP metadata, and pasting into job fields."""
from types import SimpleNamespace

import pytest
from PIL import Image

from modules import generation_parameters_copypaste, images, infotext_utils
from modules.infotext_utils import infotext_to_fields, parse_generation_parameters
from modules.shared_options import opts as live_opts

# What A1111 adds for every key an infotext does not name (written out here, independent of the module's table).
DEFAULTS = {
    "Clip skip": "1", "Hires resize-1": 0, "Hires resize-2": 0, "Hires sampler": "Use same sampler",
    "Hires schedule type": "Use same scheduler", "Hires checkpoint": "Use same checkpoint", "Hires prompt": "",
    "Hires negative prompt": "", "Mask mode": "Inpaint masked", "Masked content": "original", "Inpaint area": "Whole picture",
    "Masked area padding": 32, "RNG": "GPU", "Schedule type": "Automatic", "Schedule max sigma": 0, "Schedule min sigma": 0,
    "Schedule rho": 0, "VAE Encoder": "Full", "VAE Decoder": "Full", "FP8 weight": "Disable",
    "Refiner switch by sampling steps": False,
}


def expect(**values):
    """DEFAULTS overlaid with values; keyword names use _ for spaces, __ for "-" (e.g. Size__1 -> "Size-1"); keys
    passed with ** that already hold a space or "-" are taken as written."""
    res = dict(DEFAULTS)
    for key, value in values.items():
        written = " " in key or "-" in key
        res[key if written else key.replace("__", "-").replace("_", " ")] = value
    return res


def make_opts(**overrides):
    values = dict(infotext_skip_pasting=[], infotext_styles="Apply if any", use_old_hires_fix_width_height=False,
                  auto_backcompat=True)
    values.update(overrides)
    return SimpleNamespace(**values)


EX1 = """masterpiece, a cozy wooden cabin in a snowy forest, warm window light, (volumetric fog:1.2)
Negative prompt: lowres, blurry, watermark
Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234567890, Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.10.1"""

EX2 = """1girl, solo, silver hair, looking at viewer, night city, <lora:add_detail:0.6>
Negative prompt: EasyNegative, (worst quality:1.4)
Steps: 28, Sampler: Euler a, Schedule type: Automatic, CFG scale: 6.5, Seed: 3047592471, Size: 512x768, Model hash: 7f96a1a9ca, Model: anything-v5, VAE hash: 735e4c3a44, VAE: vae-ft-mse-840000-ema-pruned.safetensors, Denoising strength: 0.45, Clip skip: 2, Hires upscale: 2, Hires steps: 12, Hires upscaler: R-ESRGAN 4x+ Anime6B, Lora hashes: "add_detail: 7c6bad76eb54", TI hashes: "EasyNegative: c74b4e810b03", Version: v1.10.1"""

EX3 = """a red leather armchair in a sunlit living room
Negative prompt: deformed, blurry
Steps: 30, Sampler: DPM++ 2M SDE, Schedule type: Exponential, CFG scale: 7, Seed: 42, Size: 768x768, Model hash: c6bbc15e32, Model: sd-v1-5-inpainting, Denoising strength: 0.75, Conditional mask weight: 1.0, Mask blur: 4, Inpaint area: Only masked, Masked area padding: 32, Version: v1.10.1"""

EX4 = """cinematic photo of a lighthouse at dusk, dramatic clouds, 35mm
Negative prompt: cartoon, painting, illustration
Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 987654321, Size: 1024x1024, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, VAE hash: 63aeecb90f, VAE: sdxl_vae.safetensors, Refiner: sd_xl_refiner_1.0 [7440042bbd], Refiner switch at: 0.8, Version: v1.10.1"""

EX5 = """portrait of an old sailor, oil painting, rembrandt lighting
Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 1000, Size: 512x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Variation seed: 2000, Variation seed strength: 0.3, Seed resize from: 512x640, ENSD: 31337, RNG: CPU, Version: v1.10.1"""

EX6 = """a stone castle on a hill
Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 555, Size: 512x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.9, Mask mode: Inpaint not masked, Mask blur: 8, Masked content: latent noise, Version: v1.10.1"""

EX7 = """a cat wearing a hat
Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 5, Seed: 77, Size: 512x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Script: X/Y/Z plot, X Type: CFG Scale, X Values: "5, 7, 9", Version: v1.10.1"""

EX8 = """girl with an umbrella
Negative prompt: ugly
Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 965400086, Size: 512x512, Model hash: 45dee52b, Clip skip: 2, ENSD: 31337"""

DOWNCAST = {"Downcast alphas_cumprod": True}  # a key with an underscore, so not spelled through expect()'s names
BASIC = "Steps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x64"
BASIC_VALUES = dict(Steps="20", Sampler="Euler", CFG_scale="7", Seed="1", Size__1="64", Size__2="64")

CASES = [
    pytest.param(EX1, expect(
        Prompt="masterpiece, a cozy wooden cabin in a snowy forest, warm window light, (volumetric fog:1.2)",
        Negative_prompt="lowres, blurry, watermark", Steps="20", Sampler="DPM++ 2M", Schedule_type="Karras", CFG_scale="7",
        Seed="1234567890", Size__1="512", Size__2="768", Model_hash="6ce0161689", Model="v1-5-pruned-emaonly",
        Version="v1.10.1", Emphasis="Original"), id="example-1-plain-with-emphasis"),
    pytest.param(EX2, expect(
        Prompt="1girl, solo, silver hair, looking at viewer, night city, <lora:add_detail:0.6>",
        Negative_prompt="EasyNegative, (worst quality:1.4)", Steps="28", Sampler="Euler a", Schedule_type="Automatic",
        CFG_scale="6.5", Seed="3047592471", Size__1="512", Size__2="768", Model_hash="7f96a1a9ca", Model="anything-v5",
        VAE_hash="735e4c3a44", VAE="vae-ft-mse-840000-ema-pruned.safetensors", Denoising_strength="0.45", Clip_skip="2",
        Hires_upscale="2", Hires_steps="12", Hires_upscaler="R-ESRGAN 4x+ Anime6B", Lora_hashes="add_detail: 7c6bad76eb54",
        TI_hashes="EasyNegative: c74b4e810b03", Version="v1.10.1", Emphasis="Original"), id="example-2-hires-lora-ti-vae"),
    pytest.param(EX3, expect(
        Prompt="a red leather armchair in a sunlit living room", Negative_prompt="deformed, blurry", Steps="30",
        Sampler="DPM++ 2M SDE", Schedule_type="Exponential", CFG_scale="7", Seed="42", Size__1="768", Size__2="768",
        Model_hash="c6bbc15e32", Model="sd-v1-5-inpainting", Denoising_strength="0.75", Conditional_mask_weight="1.0",
        Mask_blur="4", Inpaint_area="Only masked", Masked_area_padding="32", Version="v1.10.1"), id="example-3-inpaint"),
    pytest.param(EX4, expect(
        Prompt="cinematic photo of a lighthouse at dusk, dramatic clouds, 35mm",
        Negative_prompt="cartoon, painting, illustration", Steps="30", Sampler="DPM++ 2M", Schedule_type="Karras",
        CFG_scale="7", Seed="987654321", Size__1="1024", Size__2="1024", Model_hash="31e35c80fc", Model="sd_xl_base_1.0",
        VAE_hash="63aeecb90f", VAE="sdxl_vae.safetensors", Refiner="sd_xl_refiner_1.0 [7440042bbd]",
        Refiner_switch_at="0.8", Version="v1.10.1"), id="example-4-sdxl-refiner"),
    pytest.param(EX5, expect(
        Prompt="portrait of an old sailor, oil painting, rembrandt lighting", Negative_prompt="", Steps="20",
        Sampler="Euler a", Schedule_type="Automatic", CFG_scale="7", Seed="1000", Size__1="512", Size__2="512",
        Model_hash="6ce0161689", Model="v1-5-pruned-emaonly", Variation_seed="2000", Variation_seed_strength="0.3",
        Seed_resize_from__1="512", Seed_resize_from__2="640", ENSD="31337", RNG="CPU", Version="v1.10.1"),
        id="example-5-variation-seed-resize-cpu-rng"),
    pytest.param(EX6, expect(
        Prompt="a stone castle on a hill", Negative_prompt="", Steps="25", Sampler="DPM++ 2M", Schedule_type="Karras",
        CFG_scale="7.5", Seed="555", Size__1="512", Size__2="512", Model_hash="6ce0161689", Model="v1-5-pruned-emaonly",
        Denoising_strength="0.9", Mask_mode="Inpaint not masked", Mask_blur="8", Masked_content="latent noise",
        Version="v1.10.1"), id="example-6-inverted-mask"),
    pytest.param(EX7, expect(
        Prompt="a cat wearing a hat", Negative_prompt="", Steps="20", Sampler="DPM++ 2M", Schedule_type="Karras",
        CFG_scale="5", Seed="77", Size__1="512", Size__2="512", Model_hash="6ce0161689", Model="v1-5-pruned-emaonly",
        Script="X/Y/Z plot", X_Type="CFG Scale", X_Values="5, 7, 9", Version="v1.10.1"), id="example-7-xyz-quoted-list"),
    pytest.param(EX8, expect(
        Prompt="girl with an umbrella", Negative_prompt="ugly", Steps="20", Sampler="DPM++ 2M Karras", CFG_scale="7",
        Seed="965400086", Size__1="512", Size__2="512", Model_hash="45dee52b", Clip_skip="2", ENSD="31337"),
        id="example-8-old-combined-sampler-legacy-hash"),
    pytest.param("a castle,\non a hill\nat night\nNegative prompt: blurry,\nlow quality\n" + BASIC, expect(
        Prompt="a castle,\non a hill\nat night", Negative_prompt="blurry,\nlow quality", **BASIC_VALUES),
        id="multi-line-prompt-and-negative"),
    pytest.param("  first line  \n\tsecond line\t\n" + BASIC + "\n\n", expect(
        Prompt="first line\nsecond line", Negative_prompt="", **BASIC_VALUES), id="lines-and-whole-text-stripped"),
    pytest.param("just a prompt\nwith two lines", expect(Prompt="just a prompt\nwith two lines", Negative_prompt=""),
                 id="no-parameter-line"),
    pytest.param("a prompt\nSteps: 20, Seed: 5", expect(Prompt="a prompt\nSteps: 20, Seed: 5", Negative_prompt=""),
                 id="two-pairs-are-prompt-text"),
    pytest.param(BASIC, expect(Prompt="", Negative_prompt="", **BASIC_VALUES), id="parameters-only"),
    pytest.param("", expect(Prompt="", Negative_prompt=""), id="empty-text"),
    pytest.param('p\nSteps: 20, Seed: 1, Note: "say \\"hi\\", then:\\nleave", CFG scale: 7', expect(
        Prompt="p", Negative_prompt="", Steps="20", Seed="1", Note='say "hi", then:\nleave', CFG_scale="7"),
        id="quoted-value-with-escapes-commas-newline"),
    pytest.param('p\nSteps: 20, Seed: 1, Style: "猫, 犬", Cfg: 7', expect(
        Prompt="p", Negative_prompt="", Steps="20", Seed="1", Style="猫, 犬", Cfg="7"), id="quoted-unicode"),
    pytest.param('p\nSteps: 20, Seed: 1, Broken: "unterminated \\q", CFG scale: 7', expect(
        Prompt="p", Negative_prompt="", Steps="20", Seed="1", Broken='"unterminated \\q"', CFG_scale="7"),
        id="invalid-json-string-kept-as-written"),
    pytest.param("p\nSteps: 20, Seed: 1, Steps: 30, Seed: 2, CFG scale: 7", expect(
        Prompt="p", Negative_prompt="", Steps="30", Seed="2", CFG_scale="7"), id="duplicate-keys-last-wins"),
    pytest.param("p\nSteps: 20, Hires prompt: , CFG scale: 7, Seed: 1", expect(
        Prompt="p", Negative_prompt="", Steps="20", CFG_scale="7", Seed="1"), id="empty-value-dropped"),
    pytest.param("p\nSteps: 20, Seed: 1, Model: sd_xl:v2 [abc], CFG scale: 7", expect(
        Prompt="p", Negative_prompt="", Steps="20", Seed="1", Model="sd_xl:v2 [abc]", CFG_scale="7"),
        id="unquoted-colon-from-forks"),
    pytest.param("p\nSize: 1024x1536, Hires resize: 2048x3072, Seed resize from: 0x0, Steps: 4", expect(
        Prompt="p", Negative_prompt="", Size__1="1024", Size__2="1536", Hires_resize__1="2048", Hires_resize__2="3072",
        Seed_resize_from__1="0", Seed_resize_from__2="0", Steps="4"), id="every-WxH-value-split"),
    pytest.param("p\nSteps: 4, Seed: 1, Size: 512 x 512, Shape: 3x4x5", expect(
        Prompt="p", Negative_prompt="", Steps="4", Seed="1", Size="512 x 512", Shape="3x4x5"),
        id="almost-sizes-not-split"),
    pytest.param(
        "masterpiece, best quality, 1girl\nNegative prompt: lowres\nSteps: 30, Size: 832x1216, Seed: 2814711339, "
        "Model: ponyDiffusionV6XL, Version: v1.6.0, Sampler: DPM++ 2M Karras, CFG scale: 7, Clip skip: 2, "
        "Model hash: 67ab2fd8ec, Hires steps: 20, Hires upscale: 1.5, Hires upscaler: 4x-UltraSharp, Denoising strength: 0.4",
        expect(Prompt="masterpiece, best quality, 1girl", Negative_prompt="lowres", Steps="30", Size__1="832",
               Size__2="1216", Seed="2814711339", Model="ponyDiffusionV6XL", Version="v1.6.0", Sampler="DPM++ 2M Karras",
               CFG_scale="7", Clip_skip="2", Model_hash="67ab2fd8ec", Hires_steps="20", Hires_upscale="1.5",
               Hires_upscaler="4x-UltraSharp", Denoising_strength="0.4", **DOWNCAST),
        id="civitai-key-order-v1.6"),
    pytest.param(
        'a fox\nSteps: 25, Sampler: Euler a, CFG scale: 7, Seed: 9, Created Date: 2024-03-01T10:20:30.000Z, '
        'Civitai resources: [{"type":"checkpoint","modelVersionId":128713}], Civitai metadata: {}',
        expect(Prompt="a fox", Negative_prompt="", Steps="25", Sampler="Euler a", CFG_scale="7", Seed="9",
               Created_Date="2024-03-01T10:20:30.000Z", Civitai_resources='[{"type":"checkpoint"', Civitai_metadata="{}"),
        id="civitai-json-resources-cut-at-comma-like-a1111"),
    pytest.param(
        'a face\nSteps: 20, Seed: 1, CFG scale: 7, ADetailer model: face_yolov8n.pt, ADetailer prompt: "smiling, blue eyes", '
        "ADetailer confidence: 0.3, ADetailer dilate erode: 4, ADetailer mask blur: 4, ADetailer denoising strength: 0.4, "
        "ADetailer inpaint only masked: True, ADetailer inpaint padding: 32, ADetailer version: 24.1.2",
        expect(Prompt="a face", Negative_prompt="", Steps="20", Seed="1", CFG_scale="7", ADetailer_model="face_yolov8n.pt",
               ADetailer_prompt="smiling, blue eyes", ADetailer_confidence="0.3", ADetailer_dilate_erode="4",
               ADetailer_mask_blur="4", ADetailer_denoising_strength="0.4", ADetailer_inpaint_only_masked="True",
               ADetailer_inpaint_padding="32", ADetailer_version="24.1.2"), id="adetailer-keys"),
    pytest.param(
        'edges\nSteps: 20, Seed: 1, CFG scale: 7, ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny [d14c016b], '
        'Weight: 1, Resize Mode: Crop and Resize, Guidance Start: 0, Guidance End: 1, Pixel Perfect: False, Control Mode: '
        'Balanced", ControlNet 1: "Module: none, Model: None, Weight: 0.5"',
        expect(Prompt="edges", Negative_prompt="", Steps="20", Seed="1", CFG_scale="7",
               ControlNet_0="Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 1, Resize Mode: Crop and "
                            "Resize, Guidance Start: 0, Guidance End: 1, Pixel Perfect: False, Control Mode: Balanced",
               ControlNet_1="Module: none, Model: None, Weight: 0.5"), id="controlnet-units"),
    pytest.param(
        'p <lora:add_detail:0.5> <lora:more_details:1>\nSteps: 20, Seed: 1, CFG scale: 7, '
        'Lora hashes: "add_detail: 7c6bad76eb54, more_details: 3b8aa1d351ef", '
        'TI hashes: "EasyNegative: c74b4e810b03, badhandv4: 5e40d722fc3d", Version: v1.9.4',
        expect(Prompt="p <lora:add_detail:0.5> <lora:more_details:1>", Negative_prompt="", Steps="20", Seed="1",
               CFG_scale="7", Lora_hashes="add_detail: 7c6bad76eb54, more_details: 3b8aa1d351ef",
               TI_hashes="EasyNegative: c74b4e810b03, badhandv4: 5e40d722fc3d", Version="v1.9.4"), id="lora-and-ti-hashes"),
    pytest.param("p\nSteps: 20, Seed: 1, Frobnicate level: 11, some-key/x: a b, Üñï: z", expect(
        Prompt="p", Negative_prompt="", Steps="20", Seed="1", Frobnicate_level="11", **{"some-key/x": "a b"}, Üñï="z"),
        id="unknown-keys-kept"),
    pytest.param("a cat\nSteps: 20, Seed: 1, Hypernet: anime, Hypernet strength: 0.8", expect(
        Prompt="a cat<hypernet:anime:0.8>", Negative_prompt="", Steps="20", Seed="1", Hypernet="anime",
        Hypernet_strength="0.8"), id="legacy-hypernet"),
    pytest.param("a cat\nSteps: 20, Seed: 1, Hypernet: anime", expect(
        Prompt="a cat<hypernet:anime:1.0>", Negative_prompt="", Steps="20", Seed="1", Hypernet="anime"),
        id="legacy-hypernet-default-strength"),
    pytest.param("p\nSteps: 20, Size: 1024x1024, First pass size: 512x640, Denoising strength: 0.7", expect(
        Prompt="p", Negative_prompt="", Steps="20", Size__1=512, Size__2=640, First_pass_size__1="512",
        First_pass_size__2="640", Denoising_strength="0.7", Hires_resize__1=1024, Hires_resize__2=1024),
        id="legacy-first-pass-size"),
    pytest.param("p\nSteps: 20, Size: 1024x768, First pass size: 0x0, Denoising strength: 0.7", expect(
        Prompt="p", Negative_prompt="", Steps="20", Size__1=640, Size__2=448, First_pass_size__1="0",
        First_pass_size__2="0", Denoising_strength="0.7", Hires_resize__1=1024, Hires_resize__2=768),
        id="legacy-first-pass-size-auto"),
    pytest.param("a [cat:dog:5]\nSteps: 20, Sampler: DDIM, Seed: 1, Version: v1.5.1", expect(
        Prompt="a [cat:dog:5]", Negative_prompt="", Steps="20", Sampler="DDIM", Seed="1", Version="v1.5.1",
        Old_prompt_editing_timelines=True, Pad_conds_v0=True, **DOWNCAST, Emphasis="Original"),
        id="version-1.5-backcompat"),
    pytest.param("p\nSteps: 20, Seed: 1, CFG scale: 7, Version: v1.7.0-225-g1234abc", expect(
        Prompt="p", Negative_prompt="", Steps="20", Seed="1", CFG_scale="7", Version="v1.7.0-225-g1234abc"),
        id="version-with-commit-count-at-tsnr"),
    pytest.param("p\nSteps: 20, Seed: 1, CFG scale: 7, Version: v1.7.0-224-g1234abc", expect(
        Prompt="p", Negative_prompt="", Steps="20", Seed="1", CFG_scale="7", Version="v1.7.0-224-g1234abc",
        **DOWNCAST), id="version-with-commit-count-before-tsnr"),
    pytest.param("p\nSteps: 20, Seed: 1, Refiner: xl_refiner [7440042bbd], Refiner switch at: 0.8, Version: v1.7.0", expect(
        Prompt="p", Negative_prompt="", Steps="20", Seed="1", Refiner="xl_refiner [7440042bbd]", Refiner_switch_at="0.8",
        Version="v1.7.0", **DOWNCAST, Refiner_switch_by_sampling_steps=True),
        id="version-1.7-refiner-by-steps"),
    pytest.param("p\nSteps: 20, Seed: 1, CFG scale: 7, Version: f0.0.17v1.8.0rc-latest-276-g29be1da7", expect(
        Prompt="p", Negative_prompt="", Steps="20", Seed="1", CFG_scale="7",
        Version="f0.0.17v1.8.0rc-latest-276-g29be1da7"), id="forge-version-no-backcompat"),
    pytest.param("p\nSteps: 20, Seed: 1, CFG scale: 7, Version: atelier-0.1.0", expect(
        Prompt="p", Negative_prompt="", Steps="20", Seed="1", CFG_scale="7", Version="atelier-0.1.0"),
        id="own-version-no-backcompat"),
    pytest.param("(a:1.3) cat\nSteps: 20, Seed: 1, Emphasis: No norm", expect(
        Prompt="(a:1.3) cat", Negative_prompt="", Steps="20", Seed="1", Emphasis="No norm"), id="emphasis-kept"),
    pytest.param("a cat BREAK a dog \\(escaped\\)\nSteps: 20, Seed: 1, CFG scale: 7", expect(
        Prompt="a cat BREAK a dog \\(escaped\\)", Negative_prompt="", Steps="20", Seed="1", CFG_scale="7"),
        id="break-and-escapes-are-not-emphasis"),
    pytest.param("p\nSteps: 20, Seed: 1, FP8 weight: Enable for SDXL", expect(
        Prompt="p", Negative_prompt="", Steps="20", Seed="1", FP8_weight="Enable for SDXL",
        Cache_FP16_weight_for_LoRA=False), id="fp8-adds-cache-default"),
    pytest.param("p\nNegative prompt:\n" + BASIC, expect(Prompt="p", Negative_prompt="", **BASIC_VALUES),
                 id="empty-negative-prompt-line"),
    pytest.param("p mentions Negative prompt: here\n" + BASIC, expect(
        Prompt="p mentions Negative prompt: here", Negative_prompt="", **BASIC_VALUES), id="negative-marker-mid-line"),
    pytest.param("p\nNegative prompt: a\nNegative prompt: b\n" + BASIC, expect(
        Prompt="p", Negative_prompt="a\nb", **BASIC_VALUES), id="every-negative-marker-stripped"),
    pytest.param("p\n\nq\nNegative prompt:\nfoo\n\nbar\n" + BASIC, expect(
        Prompt="p\n\nq", Negative_prompt="foo\n\nbar", **BASIC_VALUES), id="empty-first-negative-line"),
    pytest.param("p\nSteps: 20, Seed: 1, Token merging ratio hr: 0.5, Schedule max sigma: 14.6, Tiling, Schedule rho: 7",
                 expect(Prompt="p", Negative_prompt="", Steps="20", Seed="1", Token_merging_ratio_hr="0.5",
                        Schedule_max_sigma="14.6", Schedule_rho="7"), id="bare-key-without-value-skipped"),
]


def case(case_id):
    """(infotext, expected) of the table entry with that id."""
    return next(c.values for c in CASES if c.id == case_id)


@pytest.mark.parametrize(("infotext", "expected"), CASES)
def test_parse_table(infotext, expected):
    assert parse_generation_parameters(infotext, opts=make_opts()) == expected


def test_table_is_large_enough():
    assert len(CASES) >= 30


def test_old_name_is_the_same_parser():
    assert generation_parameters_copypaste.parse_generation_parameters is infotext_utils.parse_generation_parameters


def test_skip_fields_argument_and_setting():
    params = parse_generation_parameters(EX8, ["Seed", "Clip skip"], opts=make_opts())
    assert "Seed" not in params and "Clip skip" not in params and params["Steps"] == "20"
    params = parse_generation_parameters(EX8, opts=make_opts(infotext_skip_pasting=["Steps"]))
    assert "Steps" not in params and params["Seed"] == "965400086"


def test_backcompat_off():
    params = parse_generation_parameters("a [b:c:2]\nSteps: 1, Seed: 1, Version: v1.5.0", opts=make_opts(auto_backcompat=False))
    assert "Old prompt editing timelines" not in params and "Downcast alphas_cumprod" not in params


def test_old_hires_width_height_setting_uses_hires_resize_as_size():
    text = "p\nSteps: 1, Size: 512x512, Hires resize: 1024x768, Denoising strength: 0.5"
    params = parse_generation_parameters(text, opts=make_opts(use_old_hires_fix_width_height=True))
    assert (params["Size-1"], params["Size-2"]) == (1024, 768)


def test_live_settings_are_used_by_default():
    assert live_opts.infotext_skip_pasting == []
    assert parse_generation_parameters(EX1) == case("example-1-plain-with-emphasis")[1]


class FakeStyles:
    """A styles database holding one style: "masterpiece, " before the prompt and "lowres, " before the negative."""

    def extract_styles_from_prompt(self, prompt, negative):
        if prompt.startswith("masterpiece, ") and negative.startswith("lowres, "):
            return ["Quality"], prompt[len("masterpiece, "):], negative[len("lowres, "):]
        return [], prompt, negative


@pytest.mark.parametrize(("mode", "styles_array", "prompt"), [
    ("Apply if any", ["Quality"], "a cozy wooden cabin in a snowy forest, warm window light, (volumetric fog:1.2)"),
    ("Apply", ["Quality"], "a cozy wooden cabin in a snowy forest, warm window light, (volumetric fog:1.2)"),
    ("Discard", None, "a cozy wooden cabin in a snowy forest, warm window light, (volumetric fog:1.2)"),
    ("Ignore", None, "masterpiece, a cozy wooden cabin in a snowy forest, warm window light, (volumetric fog:1.2)"),
])
def test_styles_found_in_prompts(mode, styles_array, prompt):
    params = parse_generation_parameters(EX1, styles=FakeStyles(), opts=make_opts(infotext_styles=mode))
    assert params.get("Styles array") == styles_array
    assert params["Prompt"] == prompt


def test_styles_apply_sets_empty_list_when_none_found():
    params = parse_generation_parameters(EX5, styles=FakeStyles(), opts=make_opts(infotext_styles="Apply"))
    assert params["Styles array"] == [] and params["Prompt"].startswith("portrait")


# ---- the same infotexts through image metadata ----

@pytest.mark.parametrize("infotext", [case.values[0] for case in CASES if case.values[0]])
@pytest.mark.parametrize("extension", ["png", "jpg", "webp"])
def test_metadata_round_trip(tmp_path, infotext, extension):
    path = tmp_path / f"image.{extension}"
    images.save_image_with_geninfo(Image.new("RGB", (8, 8), "red"), infotext, str(path), opts=SimpleNamespace(
        enable_pnginfo=True, jpeg_quality=80, webp_lossless=False))
    with Image.open(path) as image:
        text, _ = images.read_info_from_image(image)
    assert text == infotext
    assert parse_generation_parameters(text, opts=make_opts()) == parse_generation_parameters(infotext, opts=make_opts())


def test_png_chunk_kinds(tmp_path):
    """Latin-1 text goes into tEXt, anything else into iTXt; both read back."""
    latin, unicode = tmp_path / "latin.png", tmp_path / "unicode.png"
    png_opts = SimpleNamespace(enable_pnginfo=True)
    images.save_image_with_geninfo(Image.new("RGB", (8, 8)), EX1, str(latin), opts=png_opts)
    images.save_image_with_geninfo(Image.new("RGB", (8, 8)), case("quoted-unicode")[0], str(unicode), opts=png_opts)
    assert b"tEXtparameters" in latin.read_bytes() and b"iTXtparameters" in unicode.read_bytes()
    for path, text in ((latin, EX1), (unicode, case("quoted-unicode")[0])):
        with Image.open(path) as image:
            assert images.read_info_from_image(image)[0] == text


# ---- pasting into job fields ----

def find_checkpoint_in(titles: dict):
    return lambda key: titles.get(key)


def test_fields_of_example_2_with_hires():
    pasted = infotext_to_fields(parse_generation_parameters(EX2, opts=make_opts()), "txt2img", opts=live_opts)
    assert pasted.fields == {
        "prompt": "1girl, solo, silver hair, looking at viewer, night city, <lora:add_detail:0.6>",
        "negative_prompt": "EasyNegative, (worst quality:1.4)", "steps": 28, "cfg_scale": 6.5, "seed": 3047592471,
        "width": 512, "height": 768, "denoising_strength": 0.45, "hr_scale": 2.0, "hr_upscaler": "R-ESRGAN 4x+ Anime6B",
        "hr_second_pass_steps": 12, "hr_resize_x": 0, "hr_resize_y": 0, "hr_checkpoint_name": "Use same checkpoint",
        "hr_sampler_name": "Use same sampler", "hr_scheduler": "Use same scheduler", "hr_prompt": "",
        "hr_negative_prompt": "", "sampler_name": "Euler a", "scheduler": "Automatic", "enable_hr": True,
    }
    # Emphasis: Original is the current setting, so it is no override
    assert pasted.override_settings == {"CLIP_stop_at_last_layers": 2, "sd_vae": "vae-ft-mse-840000-ema-pruned.safetensors"}
    assert pasted.unknown == {}


def test_old_combined_sampler_name_is_split():
    pasted = infotext_to_fields(parse_generation_parameters(EX8, opts=make_opts()), opts=live_opts)
    assert (pasted.fields["sampler_name"], pasted.fields["scheduler"]) == ("DPM++ 2M", "Automatic")
    assert pasted.override_settings == {"CLIP_stop_at_last_layers": 2, "eta_noise_seed_delta": 31337}


@pytest.mark.parametrize(("sampler", "schedule", "expected"), [
    ("DPM++ 2M", "Karras", ("DPM++ 2M", "Automatic")),  # Karras is DPM++ 2M's own default
    ("Euler a", "Karras", ("Euler a", "Karras")),
    ("Euler a Karras", "Automatic", ("Euler a", "Karras")),
    ("DPM++ 2M SDE Exponential", "Automatic", ("DPM++ 2M SDE", "Automatic")),
    ("No Such Sampler", "Automatic", ("No Such Sampler", "Automatic")),
])
def test_sampler_and_schedule_for_pasting(sampler, schedule, expected):
    assert infotext_utils.sampler_and_scheduler({"Sampler": sampler, "Schedule type": schedule}) == expected


def test_img2img_fields_and_variation():
    params = parse_generation_parameters(EX6 + ", Variation seed: 9, Variation seed strength: 0.25, Seed resize from: 320x256",
                                         opts=make_opts())
    fields = infotext_to_fields(params, "img2img", opts=live_opts).fields
    assert fields["inpainting_mask_invert"] == 1 and fields["inpainting_fill"] == 2 and fields["mask_blur"] == 8
    assert fields["inpaint_full_res"] is False and fields["inpaint_full_res_padding"] == 32
    assert (fields["subseed"], fields["subseed_strength"]) == (9, 0.25)
    assert (fields["seed_resize_from_w"], fields["seed_resize_from_h"]) == (320, 256)
    assert "hr_scale" not in fields and "enable_hr" not in fields


def test_unknown_keys_are_reported_and_defaults_are_not():
    params = parse_generation_parameters(case("adetailer-keys")[0], opts=make_opts())  # ADetailer
    unknown = infotext_to_fields(params, opts=live_opts).unknown
    assert sorted(unknown) == sorted(k for k in case("adetailer-keys")[1] if k.startswith("ADetailer"))
    assert infotext_to_fields(parse_generation_parameters(EX1, opts=make_opts()), opts=live_opts).unknown == {}


def test_refiner_found_by_closest_match():
    params = parse_generation_parameters(EX4, opts=make_opts())
    fields = infotext_to_fields(params, opts=live_opts,
                                find_refiner=find_checkpoint_in({"sd_xl_refiner_1.0 [7440042bbd]": "refiners/xl.safetensors"})).fields
    assert fields["refiner_checkpoint"] == "refiners/xl.safetensors" and fields["refiner_switch_at"] == 0.8


def test_model_hash_switches_checkpoint_only_when_present_and_allowed(monkeypatch):
    params = parse_generation_parameters(EX1, opts=make_opts())
    finder = find_checkpoint_in({"6ce0161689": "v1-5-pruned-emaonly.safetensors [6ce0161689]"})
    monkeypatch.setitem(live_opts.data, "disable_weights_auto_swap", False)
    pasted = infotext_to_fields(params, opts=live_opts, find_checkpoint=finder)
    assert pasted.override_settings["sd_model_checkpoint"] == "v1-5-pruned-emaonly.safetensors [6ce0161689]"
    assert pasted.missing_checkpoint is None
    absent = infotext_to_fields(params, opts=live_opts, find_checkpoint=find_checkpoint_in({}))
    assert "sd_model_checkpoint" not in absent.override_settings
    assert absent.missing_checkpoint == "v1-5-pruned-emaonly"
    monkeypatch.setitem(live_opts.data, "disable_weights_auto_swap", True)
    assert "sd_model_checkpoint" not in infotext_to_fields(params, opts=live_opts, find_checkpoint=finder).override_settings


def test_override_equal_to_current_value_is_not_listed(monkeypatch):
    monkeypatch.setitem(live_opts.data, "CLIP_stop_at_last_layers", 2)
    overrides = infotext_utils.get_override_settings({"Clip skip": "2", "ENSD": "31337", "RNG": "CPU"}, opts=live_opts)
    assert sorted(overrides) == [("ENSD", "eta_noise_seed_delta", 31337), ("RNG", "randn_source", "CPU")]


def test_bad_override_value_is_skipped():
    assert infotext_utils.get_override_settings({"Clip skip": "two"}, opts=live_opts) == []


def test_override_settings_dict_from_dropdown_entries():
    assert infotext_utils.create_override_settings_dict(["Clip skip: 2", "RNG: CPU", "Not a setting: 1"], opts=live_opts) == {
        "CLIP_stop_at_last_layers": 2, "randn_source": "CPU"}
