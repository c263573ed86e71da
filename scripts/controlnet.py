"""ControlNet as the always-on script sd-webui-controlnet is ("ControlNet", api name "controlnet"): its args are the
units, as unit objects or dicts of the extension's fields, so `alwayson_scripts: {"controlnet": {"args": [...]}}`
works unchanged. The engine part lives in modules/controlnet."""
from modules import script_callbacks, scripts, ui_controlnet
from modules.api import controlnet as controlnet_api
from modules.controlnet import apply, infotext, models, preprocessors
from modules.controlnet.units import ControlNetUnit
from modules.shared_options import opts

script_callbacks.on_app_started(controlnet_api.mount, name="controlnet")


class Script(scripts.Script):
    def title(self):
        return "ControlNet"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        states, self.infotext_fields = ui_controlnet.accordion(is_img2img, int(opts.data.get("control_net_unit_count", 3)))
        return states

    def process(self, p, *args):
        units = [ControlNetUnit.from_value(a) for a in args if a is not None]
        init_images = getattr(p, "init_images", None)
        p.controlnet_units = apply.prepare(units, p.width, p.height, init_images[0] if init_images else None,
                                           models.default_dirs(), preprocessors.default_annotator_dirs())
        for prepared in p.controlnet_units:
            p.extra_generation_params[f"ControlNet {prepared.index}"] = infotext.unit_to_infotext(prepared)
