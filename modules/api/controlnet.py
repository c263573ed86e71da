"""sd-webui-controlnet's routes, same paths, fields and types: /controlnet/version, model_list, module_list,
settings, detect. Mounted by the ControlNet script through on_app_started, as the extension mounts them."""
from __future__ import annotations

from fastapi import Body, FastAPI, HTTPException

from modules.api.api import decode_base64_to_image, encode_pil_to_base64
from modules.controlnet import models, preprocessors
from modules.shared_options import opts

API_VERSION = 2  # the extension's external_code.get_api_version()


def module_names(alias_names: bool) -> list[str]:
    return [preprocessors.LABELS.get(p.name, p.name) if alias_names else p.name for p in preprocessors.PREPROCESSORS.values()]


def module_detail(alias_names: bool) -> dict:
    return {
        (preprocessors.LABELS.get(p.name, p.name) if alias_names else p.name): {
            "model_free": p.annotator is None,
            "sliders": [{"name": s.name, "value": s.value, "min": s.min, "max": s.max, "step": s.step} for s in p.sliders],
        }
        for p in preprocessors.PREPROCESSORS.values()
    }


def mount(_blocks, app: FastAPI) -> None:
    @app.get("/controlnet/version")
    def version():
        return {"version": API_VERSION}

    @app.get("/controlnet/model_list")
    def model_list(update: bool = True):
        return {"model_list": [info.title for info in models.list_models(models.default_dirs())]}

    @app.get("/controlnet/module_list")
    def module_list(alias_names: bool = False):
        return {"module_list": module_names(alias_names), "module_detail": module_detail(alias_names)}

    @app.get("/controlnet/settings")
    def settings():
        return {"control_net_unit_count": int(opts.data.get("control_net_unit_count", 3))}

    @app.post("/controlnet/detect")
    def detect(
        controlnet_module: str = Body("none", title="Controlnet Module"),
        controlnet_input_images: list[str] = Body([], title="Controlnet Input Images"),
        controlnet_processor_res: int = Body(-1, title="Controlnet Processor Resolution"),
        controlnet_threshold_a: float = Body(-1, title="Controlnet Threshold a"),
        controlnet_threshold_b: float = Body(-1, title="Controlnet Threshold b"),
        controlnet_masks: list[str] = Body([], title="Controlnet Masks"),
        low_vram: bool = Body(False, title="Low vram"),
    ):
        try:
            preprocessors.resolve(controlnet_module)
        except ValueError as e:
            raise HTTPException(status_code=422, detail="Module not available") from e
        if not controlnet_input_images:
            raise HTTPException(status_code=422, detail="No image selected")
        resolution = controlnet_processor_res if controlnet_processor_res > 0 else 512
        images = []
        for i, encoded in enumerate(controlnet_input_images):
            mask = decode_base64_to_image(controlnet_masks[i]) if i < len(controlnet_masks) else None
            try:
                detected = preprocessors.detect(controlnet_module, decode_base64_to_image(encoded), resolution,
                                                controlnet_threshold_a, controlnet_threshold_b,
                                                preprocessors.default_annotator_dirs(), mask)
            except (FileNotFoundError, NotImplementedError) as e:
                raise HTTPException(status_code=422, detail=str(e)) from e
            images.append(encode_pil_to_base64(detected))
        return {"images": images, "info": "Success"}
