"""A1111 hooks that fire in the engine: process_before_every_sampling, on_mask_blend, on_extra_noise (with the extra
noise setting), on_before_token_counter; ScriptBuiltinUI; and the processing helpers extensions import
(create_random_tensors, decode_latent_batch, apply_overlay)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from modules import (
    masking,
    processing,
    prompt_parser,
    script_callbacks,
    scripts,
    ui_toprow,
)
from modules.shared_options import opts
from tests.integration.engine_helpers import pixels, start_engine

SD1 = "tiny_sd1.safetensors"


@pytest.fixture(scope="module")
def manager(tiny_models_dir, tmp_path_factory):
    return start_engine(tiny_models_dir, tmp_path_factory.mktemp("data"))  # the checkpoint loads once for the file


@pytest.fixture()
def engine(manager):
    opts.set("sd_model_checkpoint", SD1)
    opts.set("img2img_extra_noise", 0.0)
    yield manager
    opts.set("img2img_extra_noise", 0.0)


class Recorder(scripts.Script):
    """An always-on script that records what its hooks receive."""

    def __init__(self):
        self.sampling = []
        self.blends = []

    def title(self):
        return "Recorder"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def process_before_every_sampling(self, p, *args, **kwargs):
        self.sampling.append(kwargs)


class CfgChanger(Recorder):
    def process_before_every_sampling(self, p, *args, **kwargs):
        p.cfg_scale = 1.0


class BlendRecorder(Recorder):
    keep_init = False

    def on_mask_blend(self, p, mba, *args):
        self.blends.append((mba.is_final_blend, mba.sigma is None, mba.denoiser is None))
        expected = mba.init_latent * mba.mask + mba.current_latent * mba.nmask
        assert torch.equal(mba.blended_latent, expected) and torch.equal(mba.mask + mba.nmask, torch.ones_like(mba.mask))
        if self.keep_init:
            mba.blended_latent = mba.init_latent


class KeepInit(BlendRecorder):
    keep_init = True


def runner_with(*always_on: scripts.Script) -> scripts.ScriptRunner:
    """A tab's runner holding these always-on scripts, without a page (no controls: each gets an empty slice)."""
    runner = scripts.ScriptRunner()
    for script in always_on:
        script.alwayson, script.args_from, script.args_to, script.filename = True, 1, 1, f"{script.title()}.py"
        runner.scripts.append(script)
        runner.alwayson_scripts.append(script)
    return runner


def txt2img(runner=None, **kwargs) -> processing.StableDiffusionProcessingTxt2Img:
    fields = {"prompt": "a red cube", "negative_prompt": "blurry", "steps": 3, "width": 64, "height": 64, "seed": 1234,
              "sampler_name": "Euler", "cfg_scale": 7.0, "do_not_save_samples": True, "do_not_save_grid": True}
    fields.update(kwargs)
    p = processing.StableDiffusionProcessingTxt2Img(**fields, scripts=runner, script_args=[0])
    p.processed = processing.process_images(p)
    return p


def picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(np.kron(rng.integers(0, 255, (8, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8))


def square_mask() -> Image.Image:
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((24, 24, 39, 39), fill=255)
    return mask


def img2img(runner=None, **kwargs) -> processing.StableDiffusionProcessingImg2Img:
    fields = {"prompt": "a red cube", "negative_prompt": "", "steps": 6, "width": 64, "height": 64, "seed": 1234,
              "sampler_name": "Euler", "cfg_scale": 7.0, "init_images": [picture(0)], "denoising_strength": 0.5,
              "do_not_save_samples": True, "do_not_save_grid": True}
    fields.update(kwargs)
    p = processing.StableDiffusionProcessingImg2Img(**fields, scripts=runner, script_args=[0])
    p.processed = processing.process_images(p)
    return p


def inpaint(runner=None) -> processing.StableDiffusionProcessingImg2Img:
    return img2img(runner, mask=square_mask(), mask_blur=0, inpainting_fill=1, inpaint_full_res=False,
                   denoising_strength=0.9)


def image_of(p) -> np.ndarray:
    return pixels(p.processed.images[0])


@pytest.fixture(scope="module")
def plain(manager):
    """The images of the plain img2img and inpainting jobs, without scripts or extra noise (made once)."""
    opts.set("sd_model_checkpoint", SD1)
    opts.set("img2img_extra_noise", 0.0)
    return {"img2img": image_of(img2img()), "inpaint": image_of(inpaint())}


def test_process_before_every_sampling_gets_the_first_noise_and_the_conditioning(engine):
    recorder = Recorder()
    p = txt2img(runner_with(recorder), batch_size=2)
    [call] = recorder.sampling
    assert sorted(call) == ["c", "noise", "uc", "x"]
    assert call["x"] is call["noise"] and call["noise"].shape == (2, 4, 8, 8)  # txt2img starts from the noise (A1111)
    assert isinstance(call["c"], prompt_parser.MulticondLearnedConditioning) and len(call["c"].batch) == 2
    assert len(call["uc"]) == 2 and call["uc"][0][0].cond.context.shape[0] == 1
    # create_random_tensors draws exactly the engine's noise for those seeds
    assert torch.equal(processing.create_random_tensors((4, 8, 8), p.all_seeds, p=p), call["noise"])
    assert not torch.equal(processing.create_random_tensors((4, 8, 8), [1, 2]), call["noise"])


def test_process_before_every_sampling_runs_again_for_the_hires_pass(engine):
    recorder = Recorder()
    txt2img(runner_with(recorder), enable_hr=True, hr_scale=1.5, denoising_strength=0.5, hr_upscaler="Latent")
    first, hires = recorder.sampling
    assert first["noise"].shape == (1, 4, 8, 8)
    assert hires["x"].shape == hires["noise"].shape == (1, 4, 12, 12)
    assert not torch.equal(hires["x"], hires["noise"])  # the upscaled first pass, then its own noise


def test_process_before_every_sampling_in_img2img_sees_the_init_latent(engine):
    recorder = Recorder()
    p = img2img(runner_with(recorder))
    [call] = recorder.sampling
    assert torch.equal(call["x"], p.init_latent) and call["noise"].shape == p.init_latent.shape


def test_a_script_may_change_p_right_before_sampling(engine):
    changed = image_of(txt2img(runner_with(CfgChanger())))
    assert np.array_equal(changed, image_of(txt2img(cfg_scale=1.0)))
    assert not np.array_equal(changed, image_of(txt2img()))


def test_on_mask_blend_sees_every_step_then_the_final_blend(engine, plain):
    recorder = BlendRecorder()
    p = inpaint(runner_with(recorder))
    steps = len(p.denoiser.calls)
    assert steps == int(0.9 * 6) + 1
    assert recorder.blends == [(False, False, False)] * steps + [(True, True, True)]
    assert np.array_equal(image_of(p), plain["inpaint"])  # recording alone changes nothing


def test_the_blended_latent_a_script_returns_is_used(engine, plain):
    p = inpaint(runner_with(KeepInit()))
    inside = np.asarray(square_mask()) > 0
    init_decoded = pixels(processing.decode_latents(p.sd_model, p.init_latent)[0])
    assert np.array_equal(image_of(p)[inside], init_decoded[inside])  # the masked area was never regenerated
    assert not np.array_equal(plain["inpaint"][inside], init_decoded[inside])


def test_mask_blend_costs_nothing_without_a_script_defining_it():
    assert not runner_with(Recorder()).defines("on_mask_blend")
    assert runner_with(Recorder(), BlendRecorder()).defines("on_mask_blend")


class SamplerSection(scripts.ScriptBuiltinUI):
    def __init__(self):
        self.setups = 0

    def title(self):
        return "Sampler"

    def setup(self, p, *args):
        self.setups += 1


class Txt2imgOnlySection(SamplerSection):
    def show(self, is_img2img):
        return scripts.AlwaysVisible if not is_img2img else False


class PlainScript(SamplerSection, scripts.Script):
    setup_for_ui_only = False

    def title(self):
        return "Plain"


def test_builtin_ui_sections_are_always_on_with_plain_element_ids(monkeypatch):
    data = [scripts.ScriptClassData(cls, f"{cls.__name__}.py", "", None) for cls in (SamplerSection, Txt2imgOnlySection)]
    monkeypatch.setattr(scripts, "scripts_data", data)
    runner = scripts.ScriptRunner()
    runner.initialize_scripts(is_img2img=False)
    section, only_txt2img = runner.alwayson_scripts
    assert section.setup_for_ui_only and runner.selectable_scripts == []
    assert section.elem_id("sampling") == "txt2img_sampling"
    assert only_txt2img.elem_id("sampling") == "sampling"  # shown on one tab only: no tab part, never script_
    runner.initialize_scripts(is_img2img=True)
    assert [s.elem_id("steps") for s in runner.alwayson_scripts] == ["img2img_steps"]


@pytest.mark.parametrize("is_api", [False, True])
def test_builtin_ui_setup_is_left_out_of_api_jobs(is_api):
    section, plain = SamplerSection(), PlainScript()
    p = processing.StableDiffusionProcessingTxt2Img(scripts=runner_with(section, plain), script_args=[0], is_api=is_api)
    p.setup_scripts()
    assert (section.setups, plain.setups) == ((0, 1) if is_api else (1, 1))


@pytest.fixture()
def callback():
    """register(kind, fn) adds a callback; exactly those are removed afterwards."""
    registered = []

    def register(kind, fn):
        getattr(script_callbacks, f"on_{kind}")(fn)
        registered.append(fn)
        return fn

    yield register
    for fn in registered:
        script_callbacks.remove_callbacks_for_function(fn)


def test_extra_noise_zero_changes_nothing_and_fires_no_callback(engine, plain, callback):
    seen = []
    callback("extra_noise", seen.append)
    again = img2img()
    assert seen == [] and np.array_equal(image_of(again), plain["img2img"])
    assert "Extra noise" not in again.processed.infotexts[0]


def test_extra_noise_adds_the_noise_again_and_says_so(engine, plain, callback):
    seen = []
    callback("extra_noise", seen.append)
    opts.set("img2img_extra_noise", 0.5)
    p = img2img()
    [params] = seen
    assert torch.equal(params.x, p.init_latent) and params.noise.shape == p.init_latent.shape
    assert torch.allclose(params.xi, params.x + params.noise * p.denoiser.schedule[0])
    assert "Extra noise: 0.5" in p.processed.infotexts[0]
    assert not np.array_equal(image_of(p), plain["img2img"])


def test_extra_noise_callback_that_zeroes_the_noise_gives_the_plain_image(engine, plain, callback):
    def zero(params):
        params.noise = torch.zeros_like(params.noise)

    callback("extra_noise", zero)
    opts.set("img2img_extra_noise", 0.5)
    p = img2img()
    assert np.array_equal(image_of(p), plain["img2img"]) and "Extra noise: 0.5" in p.processed.infotexts[0]


def test_extra_noise_fires_in_the_hires_pass_only(engine, callback):
    seen = []
    callback("extra_noise", seen.append)
    opts.set("img2img_extra_noise", 0.2)
    p = txt2img(enable_hr=True, hr_scale=1.5, denoising_strength=0.5, hr_upscaler="Latent")
    assert [params.x.shape for params in seen] == [(1, 4, 12, 12)]
    assert "Extra noise: 0.2" in p.processed.infotexts[0]


def test_token_counter_counts_the_prompt_the_callback_leaves(engine, callback):
    seen = []

    def more_words(params):
        seen.append((params.prompt, params.steps, params.styles, params.is_positive))
        if params.is_positive:
            params.prompt += " and two more"

    assert ui_toprow.token_counter_html("a red cube", 20) == "<span class='token-count'>3/75</span>"
    callback("before_token_counter", more_words)
    assert ui_toprow.token_counter_html("a red cube", 20, ["no such style"]) == "<span class='token-count'>6/75</span>"
    assert ui_toprow.negative_token_counter_html("blurry", 30) == "<span class='token-count'>1/75</span>"
    assert seen == [("a red cube", 20, ["no such style"], True), ("blurry", 30, [], False)]


def test_token_counter_counts_the_chosen_styles_when_the_setting_says_so(engine, monkeypatch):
    ui_toprow.save_style("hooks warm", "{prompt}, warm light", "")
    assert ui_toprow.token_counter_html("a red cube", 20, ["hooks warm"]) == "<span class='token-count'>6/75</span>"
    assert ui_toprow.negative_token_counter_html("blurry", 20, ["hooks warm"]) == "<span class='token-count'>1/75</span>"
    monkeypatch.setitem(opts.data, "include_styles_into_token_counters", False)
    assert ui_toprow.token_counter_html("a red cube", 20, ["hooks warm"]) == "<span class='token-count'>3/75</span>"


def test_decode_latent_batch_gives_each_image_around_minus_one_to_one(engine):
    model = engine.current
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(7))
    decoded = processing.decode_latent_batch(model, latents, target_device=torch.device("cpu"), check_for_nans=True)
    assert isinstance(decoded, list) and [tuple(s.shape) for s in decoded] == [(3, 64, 64)] * 2
    for i, sample in enumerate(decoded):
        assert sample.dtype == torch.float32 and sample.device.type == "cpu"
        assert torch.equal(((sample + 1) / 2).clamp(0, 1), processing.decode_to_tensor(model, latents[i:i + 1])[0])
    decoded[0].clamp_(-1, 1)  # callers may edit the samples in place
    broken = latents.clone()
    broken[1, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaNs was produced in the UNet"):
        processing.decode_latent_batch(model, broken, check_for_nans=True)


def test_apply_overlay_puts_the_crop_back_under_the_original():
    generated = Image.new("RGB", (16, 16), (255, 0, 0))
    overlay = Image.new("RGBA", (64, 64), (0, 0, 255, 255))
    ImageDraw.Draw(overlay).rectangle((16, 16, 47, 47), fill=(0, 0, 0, 0))  # the masked area is transparent
    image, placed = processing.apply_overlay(generated, (16, 16, 32, 32), overlay)
    assert image.size == placed.size == (64, 64)
    assert image.getpixel((30, 30)) == (255, 0, 0) and image.getpixel((5, 5)) == (0, 0, 255)
    assert placed.getpixel((30, 30)) == (255, 0, 0) and placed.getpixel((5, 5)) == (0, 0, 0)
    assert np.array_equal(pixels(image), pixels(masking.apply_overlay(generated, (16, 16, 32, 32), overlay)))
    same, copy = processing.apply_overlay(generated, None, None)
    assert same is generated and copy is not generated and np.array_equal(pixels(copy), pixels(generated))
