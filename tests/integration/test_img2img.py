"""img2img, inpainting, batch and Hires. fix on tiny random-weight checkpoints."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, PngImagePlugin

from modules import images, img2img, processing, processing_img2img as i2i
from modules.shared_options import opts
from tests.fixtures import checkpoints
from tests.integration.engine_helpers import pixels, start_engine, txt2img

SD1 = "tiny_sd1"


@pytest.fixture()
def engine(tiny_models_dir, tmp_path):
    return start_engine(tiny_models_dir, tmp_path)


def picture(seed: int, size=(64, 64)) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.kron(rng.integers(0, 255, (size[1] // 8, size[0] // 8, 3)), np.ones((8, 8, 1)))
    return Image.fromarray(base.astype(np.uint8))


def square_mask(size=(64, 64), box=(24, 24, 40, 40)) -> Image.Image:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return mask


def run(**kwargs) -> processing.Processed:
    defaults = dict(prompt="a red cube", negative_prompt="", steps=8, width=64, height=64, seed=1234, sampler_name="Euler",
                    cfg_scale=7.0, init_images=[picture(0)], denoising_strength=0.5, do_not_save_samples=True,
                    do_not_save_grid=True)
    defaults.update(kwargs)
    opts.set("sd_model_checkpoint", kwargs.pop("checkpoint", SD1))
    defaults.pop("checkpoint", None)
    p = processing.StableDiffusionProcessingImg2Img(**defaults)
    result = processing.process_images(p)
    result.p = p
    return result


def vae_round_trip(engine, image: Image.Image) -> np.ndarray:
    model = engine.current
    return pixels(processing.decode_latents(model, i2i.encode(model, [image]))[0])


def test_strength_zero_returns_the_init_image_up_to_the_vae_round_trip(engine):
    init = picture(1)
    result = run(init_images=[init], denoising_strength=0.0)
    trip = vae_round_trip(engine, init)
    out = pixels(result.images[0])
    half = pixels(run(init_images=[init], denoising_strength=0.5).images[0])
    # strength 0 still takes A1111's one step at sigma_min: a small change next to a real denoise
    assert np.abs(out - trip).mean() < 6 and np.abs(out - trip).mean() < np.abs(half - trip).mean() / 3
    assert "Denoising strength: 0.0" in result.info


def test_strength_one_mostly_ignores_the_init_image(engine):
    def gap(strength):
        a = pixels(run(init_images=[picture(1)], denoising_strength=strength).images[0])
        b = pixels(run(init_images=[picture(2)], denoising_strength=strength).images[0])
        return np.abs(a - b).mean()
    assert gap(1.0) < gap(0.3) / 4


def test_denoising_strength_sets_the_number_of_steps(engine):
    result = run(steps=10, denoising_strength=0.5)
    assert len(result.p.denoiser.calls) == int(0.5 * 10) + 1


@pytest.mark.parametrize("full_res", [False, True])
def test_inpaint_keeps_every_pixel_outside_the_mask(engine, full_res):
    init, mask = picture(3), square_mask()
    result = run(init_images=[init], mask=square_mask(), mask_blur=2, inpaint_full_res=full_res,
                 inpaint_full_res_padding=4, denoising_strength=0.9)
    out, orig = pixels(result.images[0]), pixels(init)
    margin = masking_margin(mask, 2)
    assert out.shape == orig.shape
    assert np.array_equal(out[~margin], orig[~margin])
    assert not np.array_equal(out[margin], orig[margin])
    assert ("Inpaint area: Only masked" in result.info) == full_res


def masking_margin(mask: Image.Image, blur: int) -> np.ndarray:
    """Mask pixels grown by the blur's reach: outside it the result must be the original."""
    arr = np.asarray(mask) > 0
    reach = int(2.5 * blur + 0.5) + 1
    grown = np.zeros_like(arr)
    ys, xs = np.nonzero(arr)
    grown[max(ys.min() - reach, 0): ys.max() + reach + 1, max(xs.min() - reach, 0): xs.max() + reach + 1] = True
    return grown


def test_only_masked_returns_the_original_size(engine):
    init = picture(4, size=(128, 96))
    mask = square_mask((128, 96), (80, 40, 100, 60))
    result = run(init_images=[init], mask=mask, inpaint_full_res=True, inpaint_full_res_padding=8, width=64, height=64)
    assert result.images[0].size == (128, 96)


def test_inverted_mask_keeps_the_inside(engine):
    init, mask = picture(5), square_mask()
    result = run(init_images=[init], mask=mask, mask_blur=0, inpainting_mask_invert=1, inpaint_full_res=False,
                 denoising_strength=0.9)
    inside = np.asarray(mask) > 0
    assert np.array_equal(pixels(result.images[0])[inside], pixels(init)[inside])
    assert "Mask mode: Inpaint not masked, Mask blur: 0" in result.info


def test_each_masked_content_mode_makes_its_first_latent(engine):
    init, mask = picture(6), square_mask()
    latents = {}
    for mode in (i2i.FILL, i2i.ORIGINAL, i2i.LATENT_NOISE, i2i.LATENT_NOTHING):
        result = run(init_images=[init], mask=mask, mask_blur=0, inpainting_fill=mode, inpaint_full_res=False)
        latents[mode] = result.p.init_latent
    encoded = i2i.encode(engine.current, [init])
    regen = i2i.latent_mask(mask, encoded, True).bool()
    assert torch.equal(latents[i2i.ORIGINAL], encoded)
    assert torch.equal(latents[i2i.LATENT_NOTHING][regen], torch.zeros(int(regen.sum())))
    assert torch.equal(latents[i2i.LATENT_NOTHING][~regen], encoded[~regen])
    noise = processing.make_rng(result.p, engine.current, slice(0, 1), 64, 64).first()
    assert torch.equal(latents[i2i.LATENT_NOISE][regen], noise[regen])
    # fill repaints the masked pixels before encoding, so the masked latent changes
    assert not torch.equal(latents[i2i.FILL][regen], encoded[regen])


def test_inpainting_checkpoint_unet_receives_nine_channels(tiny_models_dir, tmp_path):
    models = tmp_path / "models"
    (models / "Stable-diffusion").mkdir(parents=True)
    checkpoints.write_sd1(models / "Stable-diffusion" / "tiny_inpaint.safetensors", inpainting=True)
    manager = start_engine(models, tmp_path)
    channels = []
    opts.set("sd_model_checkpoint", "tiny_inpaint")
    manager.get(processing.resolve_checkpoint("tiny_inpaint"))
    hook = manager.current.unet.conv_in.register_forward_hook(lambda m, args, out: channels.append(args[0].shape[1]))
    try:
        result = run(checkpoint="tiny_inpaint", mask=square_mask(), inpaint_full_res=False)
        txt2img("tiny_inpaint")
    finally:
        hook.remove()
    assert set(channels) == {9}
    assert "Conditional mask weight: 1.0" in result.info


def test_batch_folder_reports_a_bad_file_and_goes_on(engine, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for k in range(3):
        picture(10 + k).save(src / f"img{k}.png")
    (src / "broken.png").write_bytes(b"not a png")
    p = processing.StableDiffusionProcessingImg2Img(prompt="x", steps=3, width=64, height=64, seed=50,
                                                    sampler_name="Euler", denoising_strength=0.5)
    opts.set("sd_model_checkpoint", SD1)
    result = img2img.process_batch(p, str(src), str(out))
    assert [name for name, _ in result.processed] == ["img0.png", "img1.png", "img2.png"]
    assert len(result.errors) == 1 and result.errors[0].startswith("broken.png")
    assert [proc.seed for _, proc in result.processed] == [50, 51, 52]
    assert len(list(out.rglob("*.png"))) == 3


@pytest.mark.parametrize("upscaler", ["Latent", "Latent (nearest-exact)", "Lanczos", "None"])
def test_hires_output_is_scale_times_first_pass(engine, upscaler):
    result = txt2img(SD1, enable_hr=True, hr_scale=1.5, hr_upscaler=upscaler, denoising_strength=0.5, steps=4)
    assert result.images[0].size == (96, 96)
    assert f"Hires upscale: 1.5, Hires upscaler: {upscaler}" in result.info
    assert "Size: 64x64" in result.info and "Denoising strength: 0.5" in result.info


def test_hires_resize_to(engine):
    result = txt2img(SD1, enable_hr=True, hr_resize_x=128, hr_resize_y=64, hr_upscaler="Latent", denoising_strength=0.5)
    assert result.images[0].size == (128, 64)
    assert "Hires resize: 128x64" in result.info


@pytest.mark.parametrize("hr_steps,expected", [(0, int(0.5 * 6) + 1), (10, int(0.5 * 10) + 1)])
def test_hires_steps_zero_means_same_as_first_pass(engine, hr_steps, expected):
    p = processing.StableDiffusionProcessingTxt2Img(prompt="x", steps=6, width=64, height=64, seed=1, sampler_name="Euler",
                                                    enable_hr=True, hr_scale=1.5, hr_second_pass_steps=hr_steps,
                                                    hr_upscaler="Latent", denoising_strength=0.5, do_not_save_samples=True)
    opts.set("sd_model_checkpoint", SD1)
    result = processing.process_images(p)
    assert len(p.denoiser.calls) == expected  # the last run is the second pass
    assert ("Hires steps: 10" in result.info) == (hr_steps == 10)


def test_unknown_hires_upscaler_is_refused(engine):
    with pytest.raises(ValueError, match="Upscaler not found: Nope"):
        txt2img(SD1, enable_hr=True, hr_upscaler="Nope", denoising_strength=0.5)


def test_resize_modes(engine):
    wide = picture(7, size=(128, 64))
    assert images.resize_image(0, wide, 64, 64).size == (64, 64)
    cropped = images.resize_image(1, wide, 64, 64)
    assert np.array_equal(np.asarray(cropped), np.asarray(wide.resize((128, 64)).crop((32, 0, 96, 64))))
    filled = images.resize_image(2, wide, 64, 64)
    assert filled.size == (64, 64) and np.array_equal(np.asarray(filled)[16:48], np.asarray(wide.resize((64, 32), Image.LANCZOS)))


@pytest.mark.parametrize("region,expected", [
    ((10, 10, 30, 20), (10, 5, 30, 25)),      # too wide for a square: grows in height around its centre
    ((0, 0, 10, 40), (0, 0, 40, 40)),         # too tall at the left edge: grows rightwards
    ((50, 60, 64, 64), (50, 50, 64, 64)),     # at the corner: shifted back inside
])
def test_crop_region_grows_to_the_target_aspect(region, expected):
    from modules import masking

    assert masking.expand_crop_region(region, 64, 64, 64, 64) == expected


@pytest.mark.parametrize("refiner_pass,in_second", [("second pass", True), ("first pass", False), ("both passes", True)])
def test_hires_refiner_runs_in_the_pass_the_setting_names(engine, refiner_pass, in_second):
    opts.set("hires_fix_refiner_pass", refiner_pass)
    p = processing.StableDiffusionProcessingTxt2Img(prompt="x", steps=6, width=64, height=64, seed=1, sampler_name="Euler",
                                                    enable_hr=True, hr_scale=1.5, hr_upscaler="Latent", denoising_strength=0.6,
                                                    refiner_checkpoint="tiny_sdxl_refiner", refiner_switch_at=0.3,
                                                    do_not_save_samples=True)
    opts.set("sd_model_checkpoint", "tiny_sdxl")
    result = processing.process_images(p)
    second_pass_titles = {title for _, title in p.denoiser.calls}
    assert any("refiner" in t for t in second_pass_titles) == in_second
    assert ("Hires refiner: " + refiner_pass in result.info) == (refiner_pass != "second pass")


def test_sdxl_inpainting_checkpoint_gets_nine_channels(tiny_models_dir, tmp_path):
    models = tmp_path / "models"
    (models / "Stable-diffusion").mkdir(parents=True)
    checkpoints.write_sdxl(models / "Stable-diffusion" / "tiny_xl_inpaint.safetensors", inpainting=True)
    manager = start_engine(models, tmp_path)
    manager.get(processing.resolve_checkpoint("tiny_xl_inpaint"))
    channels = []
    hook = manager.current.unet.conv_in.register_forward_hook(lambda m, args, out: channels.append(args[0].shape[1]))
    try:
        init = picture(8)
        result = run(checkpoint="tiny_xl_inpaint", init_images=[init], mask=square_mask(), mask_blur=0,
                     inpaint_full_res=False, denoising_strength=0.9)
    finally:
        hook.remove()
    assert set(channels) == {9}
    outside = np.asarray(square_mask()) == 0
    assert np.array_equal(pixels(result.images[0])[outside], pixels(init)[outside])


def test_batch_names_results_after_their_inputs_and_takes_chosen_png_info(engine, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    meta = PngImagePlugin.PngInfo()
    meta.add_text("parameters", "a fox\nNegative prompt: fog\nSteps: 2, Sampler: Euler a, CFG scale: 4, Seed: 777, Size: 64x64")
    picture(1).save(src / "frame001.png", pnginfo=meta)
    picture(2).save(src / "frame002.png")
    p = processing.StableDiffusionProcessingImg2Img(prompt="night", steps=3, width=64, height=64, seed=50,
                                                    sampler_name="Euler", denoising_strength=0.5)
    opts.set("sd_model_checkpoint", SD1)
    result = img2img.process_batch(p, str(src), str(out), use_png_info=True, png_info_props=["Prompt", "Seed", "Steps"])
    # A1111's names: the input's, after the sequence number that "Add number to filename" puts first
    assert sorted(f.name for f in out.iterdir()) == ["00000-frame001.png", "00001-frame002.png"]
    first, second = (processed for _, processed in result.processed)
    assert (first.prompt, first.seed, first.steps, first.cfg_scale) == ("night a fox", 777, 2, 7.0)  # CFG not chosen
    assert (second.prompt, second.seed, second.steps) == ("night", 51, 3)  # no PNG info: the tab's values
    with Image.open(out / "00000-frame001.png") as saved:
        assert saved.info["parameters"].startswith("night a fox\nSteps: 2,")

    p.n_iter, p.override_settings = 2, {"save_images_add_number": False}
    img2img.process_batch(p, str(src), str(out))
    assert {"frame001-1.png", "frame001-2.png", "frame002-1.png"} <= {f.name for f in out.iterdir()}  # several per input
    p.outpath_samples = str(tmp_path / "usual")
    img2img.process_batch(p, str(src), "")  # no output folder: saved as any img2img job
    assert len(list(out.iterdir())) == 6 and list((tmp_path / "usual").rglob("*.png"))
