"""The API's request models: generated from the processing classes, with A1111's API defaults and limits."""
import dataclasses

import pytest
from pydantic import ValidationError

from modules import processing
from modules.api import models


def test_txt2img_defaults_are_the_apis_not_the_uis():
    req = models.StableDiffusionTxt2ImgProcessingAPI()
    assert (req.steps, req.sampler_name, req.sampler_index, req.denoising_strength) == (50, None, "Euler", 0.75)
    assert (req.save_images, req.send_images, req.alwayson_scripts, req.script_name) == (False, True, {}, None)
    assert (req.width, req.height, req.seed, req.n_iter, req.batch_size) == (512, 512, -1, 1, 1)
    assert req.cfg_scale is None  # the checkpoint family's default: A1111's 7, Flux.1's 1 (Forge)
    assert req.override_settings_restore_afterwards is True and req.enable_hr is False and req.hr_scale == 2.0


def test_img2img_defaults_and_required_init_images():
    req = models.StableDiffusionImg2ImgProcessingAPI(init_images=["x"])
    assert (req.inpainting_fill, req.inpaint_full_res, req.inpaint_full_res_padding) == (0, True, 0)
    assert (req.denoising_strength, req.mask_blur_x, req.mask_round, req.include_init_images) == (0.75, 4, True, False)
    assert req.mask is None and req.resize_mode == 0
    with pytest.raises(ValidationError, match="init_images"):
        models.StableDiffusionImg2ImgProcessingAPI()
    assert "enable_hr" not in models.StableDiffusionImg2ImgProcessingAPI.model_fields


def test_every_request_field_of_the_processing_class_is_in_the_model():
    names = {f.name for f in dataclasses.fields(processing.StableDiffusionProcessingTxt2Img)} - models.INTERNAL_FIELDS
    assert names <= set(models.StableDiffusionTxt2ImgProcessingAPI.model_fields)
    assert {"prompt", "hr_checkpoint_name", "refiner_switch_at", "s_churn", "tiling"} <= names


@pytest.mark.parametrize("field, value", [("steps", 0), ("steps", 151), ("width", 63), ("height", 2049),
                                          ("batch_size", 9), ("n_iter", 0), ("denoising_strength", -0.1),
                                          ("subseed_strength", 1.5)])
def test_values_beyond_the_limits_are_refused(field, value):
    with pytest.raises(ValidationError, match=field):
        models.StableDiffusionTxt2ImgProcessingAPI(**{field: value})


def test_unknown_fields_are_ignored_like_a1111():
    assert not hasattr(models.StableDiffusionTxt2ImgProcessingAPI(brand_new_field=1), "brand_new_field")


def test_extras_request_maps_to_postprocessing_options():
    o = models.ExtrasSingleImageRequest(image="x", upscaler_1="Lanczos", upscaler_2="Nearest",
                                        extras_upscaler_2_visibility=0.5, upscaling_resize=3).options()
    assert (o.extras_upscaler_1, o.extras_upscaler_2, o.extras_upscaler_2_visibility) == ("Lanczos", "Nearest", 0.5)
    assert (o.upscaling_resize, o.resize_mode, o.upscale_first, o.upscaling_crop) == (3, 0, False, True)
