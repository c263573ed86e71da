"""The /sdapi/v1 routes (A1111's modules.api.api): every one behind --api-auth, generations through the shared queue."""
from __future__ import annotations

import base64
import binascii
import contextvars
import dataclasses
import io
import logging
import os
import secrets
import time

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import Response
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field

from modules import (
    extensions,
    face_restoration,
    hypernetworks,
    images,
    infotext_utils,
    paths_internal,
    postprocessing,
    processing,
    progress as task_progress,
    scripts,
    sd_models,
    sd_samplers,
    sd_schedulers,
    sd_vae,
    styles,
    textual_inversion,
    ui_scripts,  # noqa: F401  (it builds, in a hidden page, the controls of scripts that declare no args)
    upscaler,
)
from modules.api import errors, jobs as job_api, models, train as train_api
from modules.model_families import flux_loader
from modules.networks import networks
from modules.shared_cmd_options import cmd_opts
from modules.shared_options import opts
from modules.shared_state import state

log = logging.getLogger(__name__)

SECRET_FLAGS = {"api_auth", "gradio_auth"}
SECRET_MASK = "********"


def decode_base64_to_image(encoding: str) -> Image.Image:
    """A bare base64 image or a data: URI; 422 naming the problem otherwise."""
    if encoding.startswith(("http://", "https://")):
        raise HTTPException(status_code=422, detail="Image URLs are not accepted; send the image as base64")
    if encoding.startswith("data:image/"):
        encoding = encoding.split(";", 1)[1].split(",", 1)[1] if ";" in encoding and "," in encoding else ""
    try:
        image = Image.open(io.BytesIO(base64.b64decode(encoding, validate=True)))
    except Image.DecompressionBombError as e:
        raise HTTPException(status_code=422, detail=f"Image too large: {e}") from e
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError) as e:
        raise HTTPException(status_code=422, detail=f"Invalid encoded image: {e}") from e
    if Image.MAX_IMAGE_PIXELS and image.width * image.height > Image.MAX_IMAGE_PIXELS:  # Pillow only warns up to twice its limit
        raise HTTPException(status_code=422, detail=f"Image too large: {image.width}x{image.height} pixels is more than "
                                                    f"the {Image.MAX_IMAGE_PIXELS} allowed")
    try:
        image.load()
    except (ValueError, OSError) as e:
        raise HTTPException(status_code=422, detail=f"Invalid encoded image: {e}") from e
    return image


def encode_pil_to_base64(image: Image.Image) -> str:
    """PNG with the infotext as its `parameters` chunk, as A1111 returns with samples_format png."""
    buffer = io.BytesIO()
    images.save_image_with_geninfo(image, image.info.get("parameters"), buffer, extension="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def validate_sampler_name(name: str) -> str:
    """A1111's: the name when it names a sampler (or alias), else a 400 naming the valid choices."""
    if sd_samplers.find_sampler(name) is None:
        choices = ", ".join(s.name for s in sd_samplers.all_samplers)
        raise HTTPException(status_code=400, detail=f"Sampler not found: {name}; valid choices: {choices}")
    return name


def api_middleware(app: FastAPI) -> None:
    @app.middleware("http")
    async def process_time(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        response.headers["X-Process-Time"] = f"{time.perf_counter() - started:.4f}"
        if cmd_opts.api_log and request.url.path.startswith("/sdapi"):
            log.info("API %s %s %s", request.method, request.url.path, response.status_code)
        return response

    errors.install(app)


def setup_cors(app: FastAPI) -> None:
    """--cors-allow-origins / --cors-allow-origins-regex as in A1111: those origins may call every route from a page,
    preflight requests included. Added last, so that it wraps every other middleware's answers too."""
    origins = [o.strip() for o in (cmd_opts.cors_allow_origins or "").split(",") if o.strip()]
    if origins or cmd_opts.cors_allow_origins_regex:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_origin_regex=cmd_opts.cors_allow_origins_regex,
                           allow_methods=["*"], allow_credentials=True, allow_headers=["*"])


def credentials_checker(logins: str | None):
    """A dependency that accepts only the --api-auth logins (none given: everyone)."""
    allowed = dict(entry.split(":", 1) for entry in (logins or "").split(",") if ":" in entry)
    basic = HTTPBasic(auto_error=False)

    def check(credentials: HTTPBasicCredentials | None = Depends(basic)) -> None:
        if not allowed:
            return
        if credentials is not None and credentials.username in allowed and \
                secrets.compare_digest(credentials.password.encode(), allowed[credentials.username].encode()):
            return
        raise HTTPException(status_code=401, detail="Incorrect username or password",
                            headers={"WWW-Authenticate": "Basic"})

    return check


def unprocessable(e: Exception) -> HTTPException:
    return HTTPException(status_code=422, detail=str(e).strip() or type(e).__name__)


api_client: contextvars.ContextVar[str] = contextvars.ContextVar("api_client", default="API")


async def remember_client(request: Request) -> None:
    """Who sent the request, for the queue's list ("API 127.0.0.1 python-requests/2.32"): async, so the endpoint,
    run in a worker thread with a copy of this context, sees it."""
    host = request.client.host if request.client else "unknown"
    agent = request.headers.get("user-agent", "").split(" ")[0]
    api_client.set(f"API {host} {agent}".strip())


class Api:
    def __init__(self, app: FastAPI, queue_lock):
        self.app = app
        self.queue_lock = queue_lock
        self.jobs_started = 0  # numbered "API job N begins/ends" log lines show the queue's order
        router = APIRouter(dependencies=[Depends(credentials_checker(cmd_opts.api_auth)), Depends(remember_client)])
        api_middleware(app)
        get, post = "GET", "POST"
        routes = [
            ("txt2img", self.text2imgapi, post, models.TextToImageResponse),
            ("img2img", self.img2imgapi, post, models.ImageToImageResponse),
            ("extra-single-image", self.extras_single_image_api, post, models.ExtrasSingleImageResponse),
            ("extra-batch-images", self.extras_batch_images_api, post, models.ExtrasBatchImagesResponse),
            ("png-info", self.pnginfoapi, post, models.PNGInfoResponse),
            ("interrogate", self.interrogateapi, post, models.InterrogateResponse),
            ("progress", self.progressapi, get, models.ProgressResponse),
            ("interrupt", self.interruptapi, post, None),
            ("skip", self.skip, post, None),
            ("options", self.get_config, get, dict),
            ("options", self.set_config, post, None),
            ("cmd-flags", self.get_cmd_flags, get, dict),
            ("samplers", self.get_samplers, get, list[models.SamplerItem]),
            ("schedulers", self.get_schedulers, get, list[models.SchedulerItem]),
            ("upscalers", self.get_upscalers, get, list[models.UpscalerItem]),
            ("latent-upscale-modes", self.get_latent_upscale_modes, get, list[models.LatentUpscalerModeItem]),
            ("sd-models", self.get_sd_models, get, list[models.SDModelItem]),
            ("sd-vae", self.get_sd_vaes, get, list[models.SDVaeItem]),
            ("hypernetworks", self.get_hypernetworks, get, list[models.HypernetworkItem]),
            ("face-restorers", self.get_face_restorers, get, list[models.FaceRestorerItem]),
            ("prompt-styles", self.get_prompt_styles, get, list[models.PromptStyleItem]),
            ("embeddings", self.get_embeddings, get, models.EmbeddingsResponse),
            ("loras", self.get_loras, get, list[models.LoraItem]),
            ("refresh-embeddings", self.refresh_embeddings, post, None),
            ("refresh-checkpoints", self.refresh_checkpoints, post, None),
            ("refresh-vae", self.refresh_vae, post, None),
            ("refresh-loras", self.refresh_loras, post, None),
            ("unload-checkpoint", self.unloadapi, post, None),
            ("reload-checkpoint", self.reloadapi, post, None),
            ("memory", self.get_memory, get, models.MemoryResponse),
            ("scripts", self.get_scripts_list, get, models.ScriptsList),
            ("script-info", self.get_script_info, get, list[dict]),
            ("extensions", self.get_extensions_list, get, list[dict]),
            ("extensions/install", self.install_extension, post, dict),
            ("extensions/update", self.update_extension, post, dict),
            ("extensions/delete", self.delete_extension, post, dict),
            ("realesrgan-models", self.get_realesrgan_models, get, list[models.RealesrganItem]),
            ("sd-modules", self.get_sd_modules, get, list[models.SDModuleItem]),
        ]
        if cmd_opts.api_server_stop:
            routes += [("server-kill", self.kill_webui, post, None), ("server-restart", self.restart_webui, post, None),
                       ("server-stop", self.stop_webui, post, None)]
        routes += train_api.routes(self)
        for path, endpoint, method, response_model in routes:
            router.add_api_route(f"/sdapi/v1/{path}", endpoint, methods=[method], response_model=response_model)
        router.add_api_route("/internal/progress", self.internal_progressapi, methods=[post],
                             response_model=models.InternalProgressResponse)
        router.add_api_route("/internal/queue", task_progress.queued_tasks, methods=[get])
        self.jobs = job_api.JobRoutes(self, router)
        router.add_api_route("/openapi.json", lambda: app.openapi(), methods=[get], include_in_schema=False)
        router.add_api_route("/docs", lambda: get_swagger_ui_html(openapi_url="/openapi.json", title="Atelier API"),
                             methods=[get], include_in_schema=False)
        app.include_router(router)

    def run_job(self, name: str, func, *args):
        """`func(*args)` in its turn in the shared queue (work other than txt2img/img2img, which the job queue runs)."""
        with self.queue_lock:
            return self.logged_job(name, func, *args)

    def logged_job(self, name: str, func, *args):
        """`func(*args)` between numbered "API job N begins/ends" log lines (the queue's order); a user's mistake found
        by the engine becomes a 422. The caller holds the queue's turn."""
        self.jobs_started += 1
        number = self.jobs_started
        log.info("API job %d begins: %s", number, name)
        try:
            return func(*args)
        except (ValueError, KeyError, sd_models.CheckpointLoadError) as e:  # the old model stays loaded
            raise unprocessable(e) from e
        finally:
            log.info("API job %d ends: %s", number, name)

    # generation

    @staticmethod
    def apply_infotext(req, tab: str) -> None:
        """A1111 1.8+: `infotext` fills every field the request leaves unset and adds its settings to
        override_settings; what the request gives explicitly wins."""
        if not req.infotext:
            return

        def find_checkpoint(name):
            info = sd_models.get_closet_checkpoint_match(name)
            return info.title if info is not None else None

        params = infotext_utils.parse_generation_parameters(req.infotext)
        pasted = infotext_utils.infotext_to_fields(params, tab, find_checkpoint=find_checkpoint, find_refiner=find_checkpoint)
        given = set(req.model_fields_set) | ({"sampler_name"} if "sampler_index" in req.model_fields_set else set())
        for name, value in pasted.fields.items():
            if name in type(req).model_fields and name not in given:
                setattr(req, name, value)
        req.override_settings = {**pasted.override_settings, **(req.override_settings or {})}

    def validate_generation(self, req) -> None:
        """Names checked before the job waits in the queue, so a mistake is reported at once with the valid choices."""
        try:
            sd_samplers.resolve_sampler_scheduler(req.sampler_name or req.sampler_index, req.scheduler)
            for key, value in (req.override_settings or {}).items():
                if key not in opts.data_labels:
                    raise ValueError(f"Unknown setting in override_settings: {key}")
                opts.check_value(key, value)
            wanted = (req.override_settings or {}).get("sd_model_checkpoint")
            for name in (wanted, req.refiner_checkpoint, getattr(req, "hr_checkpoint_name", None)):
                if name and name not in ("None", "Use same checkpoint"):
                    processing.resolve_checkpoint(name)
            hr_upscaler = getattr(req, "hr_upscaler", None)
            if getattr(req, "enable_hr", False) and hr_upscaler and hr_upscaler not in processing.LATENT_UPSCALE_MODES \
                    and hr_upscaler not in processing.image_upscaler_names():
                raise ValueError(f"Upscaler not found: {hr_upscaler}. Available: "
                                 f"{', '.join(list(processing.LATENT_UPSCALE_MODES) + processing.image_upscaler_names())}")
        except ValueError as e:
            raise unprocessable(e) from e
        self.script_args(req, self.script_runner(req))

    @staticmethod
    def script_runner(req) -> scripts.ScriptRunner:
        runner = scripts.scripts_img2img if isinstance(req, models.StableDiffusionImg2ImgProcessingAPI) else scripts.scripts_txt2img
        return runner.ensure_args(runner is scripts.scripts_img2img)

    @staticmethod
    def script_args(req, runner: scripts.ScriptRunner) -> list:
        """p.script_args for a request (A1111's rules): every control at its default; script_name chooses a
        selectable script, which gets script_args; alwayson_scripts {name: {"args": [...]}} set the first values of
        those scripts. Unknown names are a 422 listing the names there are."""
        args = runner.default_args()
        if req.script_name:
            script = runner.find(req.script_name)
            if script is None or script.alwayson:
                available = ", ".join(s.name for s in runner.selectable_scripts) or "none"
                raise HTTPException(status_code=422, detail=f"Script not found: {req.script_name}. Available scripts: {available}")
            values = list(req.script_args)[:script.args_to - script.args_from]
            args[script.args_from:script.args_from + len(values)] = values
            args[0] = runner.selectable_scripts.index(script) + 1
        for name, given in (req.alwayson_scripts or {}).items():
            script = runner.find(name)
            if script is None:
                available = ", ".join(s.name for s in runner.alwayson_scripts) or "none"
                raise HTTPException(status_code=422, detail=f"Always-on script not found: {name}. "
                                                            f"Available always-on scripts: {available}")
            if not script.alwayson:
                raise HTTPException(status_code=422, detail="Cannot have a selectable script in the always on scripts params")
            values = list((given or {}).get("args", []))[:script.args_to - script.args_from]
            args[script.args_from:script.args_from + len(values)] = values
        return args

    def processing_args(self, req, cls) -> dict:
        args = req.model_dump(exclude=set(models.API_FIELDS) | {"init_images", "mask"})
        args["sampler_name"] = req.sampler_name or req.sampler_index
        args["styles"] = args["styles"] or []
        args["override_settings"] = args["override_settings"] or {}
        args["width"], args["height"] = req.width // 8 * 8, req.height // 8 * 8  # A1111 makes the latent size W//8 x H//8
        args["do_not_save_samples"] = not req.save_images
        args["do_not_save_grid"] = not req.save_images
        args["is_api"] = True
        return args

    def generate(self, req, p: processing.StableDiffusionProcessing, name: str, echo: dict) -> dict:
        p.scripts = self.script_runner(req)
        p.script_args = self.script_args(req, p.scripts)
        processed = self.logged_job(name, processing.run_with_scripts, p)
        if echo.get("cfg_scale") is None:
            echo["cfg_scale"] = p.cfg_scale  # the family's default the job ran at
        encoded = [encode_pil_to_base64(image) for image in processed.images] if req.send_images else []
        return {"images": encoded, "parameters": echo, "info": processed.js()}

    def text2imgapi(self, txt2imgreq: models.StableDiffusionTxt2ImgProcessingAPI, who: str = Depends(job_api.owner)):
        return self.jobs.run_waiting("txt2img", txt2imgreq, who, api_client.get())

    def img2imgapi(self, img2imgreq: models.StableDiffusionImg2ImgProcessingAPI, who: str = Depends(job_api.owner)):
        return self.jobs.run_waiting("img2img", img2imgreq, who, api_client.get())

    def text2img_job(self, txt2imgreq: models.StableDiffusionTxt2ImgProcessingAPI) -> dict:
        """A queued txt2img request run by the job queue's worker (which holds the queue's turn)."""
        self.apply_infotext(txt2imgreq, "txt2img")
        self.validate_generation(txt2imgreq)
        p = processing.StableDiffusionProcessingTxt2Img(**self.processing_args(txt2imgreq, processing.StableDiffusionProcessingTxt2Img))
        return self.generate(txt2imgreq, p, "txt2img", txt2imgreq.model_dump())

    def img2img_job(self, img2imgreq: models.StableDiffusionImg2ImgProcessingAPI) -> dict:
        self.apply_infotext(img2imgreq, "img2img")
        self.validate_generation(img2imgreq)
        init_images = [decode_base64_to_image(x) for x in img2imgreq.init_images]
        mask = decode_base64_to_image(img2imgreq.mask) if img2imgreq.mask else None
        p = processing.StableDiffusionProcessingImg2Img(init_images=init_images, mask=mask,
                                                        **self.processing_args(img2imgreq, processing.StableDiffusionProcessingImg2Img))
        echo = img2imgreq.model_dump()
        if not img2imgreq.include_init_images:
            echo["init_images"], echo["mask"] = None, None
        return self.generate(img2imgreq, p, "img2img", echo)

    # extras and png info

    def extras_single_image_api(self, req: models.ExtrasSingleImageRequest):
        image = decode_base64_to_image(req.image)
        result, info = self.run_job("extras", postprocessing.run_postprocessing, postprocessing.EXTRAS_SINGLE, image,
                                    None, "", "", True, req.options(), False)
        return {"image": encode_pil_to_base64(result[0]) if result else None, "html_info": info}

    def extras_batch_images_api(self, req: models.ExtrasBatchImagesRequest):
        batch = [decode_base64_to_image(item.data) for item in req.imageList]
        result, info = self.run_job("extras", postprocessing.run_postprocessing, postprocessing.EXTRAS_BATCH, None,
                                    batch, "", "", True, req.options(), False)
        return {"images": [encode_pil_to_base64(image) for image in result], "html_info": info}

    def pnginfoapi(self, req: models.PNGInfoRequest):
        image = decode_base64_to_image(req.image)
        geninfo, items = images.read_info_from_image(image)
        items = {k: v for k, v in items.items() if isinstance(v, str)}
        params = infotext_utils.parse_generation_parameters(geninfo) if geninfo else {}
        return {"info": geninfo or "", "items": items, "parameters": params}

    def interrogateapi(self, req: models.InterrogateRequest):
        """A1111's: 404 without an image or for a model other than clip and deepdanbooru; a model file that is missing
        and cannot be downloaded is a 503 naming the file and its folder."""
        from modules import deepbooru, interrogate
        from modules.interrogate_files import ModelFileMissing

        if not req.image:
            raise HTTPException(status_code=404, detail="Image not found")
        image = decode_base64_to_image(req.image).convert("RGB")
        describe = {"clip": interrogate.interrogator.interrogate, "deepdanbooru": deepbooru.model.tag}.get(req.model)
        if describe is None:
            raise HTTPException(status_code=404, detail="Model not found")
        try:
            return {"caption": self.run_job("interrogate", describe, image)}
        except ModelFileMissing as e:
            raise HTTPException(status_code=503, detail=str(e)) from e

    # progress and control

    def progressapi(self, skip_current_image: bool = False):
        snapshot = state.dict()
        if snapshot["job_count"] == 0:
            return {"progress": 0, "eta_relative": 0, "state": snapshot, "textinfo": state.textinfo}
        progress = min(0.01 + task_progress.fraction_done(), 1.0)  # A1111: never 0 while a job runs
        elapsed = time.time() - (state.time_start or time.time())
        eta_relative = elapsed / progress - elapsed
        current_image = None
        if not skip_current_image:
            state.set_current_image()
            if state.current_image is not None:
                current_image = encode_pil_to_base64(state.current_image)
        return {"progress": progress, "eta_relative": eta_relative, "state": snapshot, "current_image": current_image,
                "textinfo": state.textinfo}

    def internal_progressapi(self, req: models.ProgressRequest):
        """A1111's /internal/progress: one task's place in the queue and, while it runs, its progress."""
        answer = task_progress.task_progress(req.id_task, req.id_live_preview, req.live_preview)
        image = answer["live_preview"]
        if image is not None:
            kind = opts.live_previews_image_format
            buffer = io.BytesIO()
            image.save(buffer, format=kind)
            answer["live_preview"] = f"data:image/{kind};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"
        return answer

    def interruptapi(self):
        if state.job:  # only the running job: a stale flag must not stop the next one
            state.interrupt()
        return {}

    def skip(self):
        if state.job:
            state.skip()
        return {}

    # settings

    def get_config(self):
        return {key: opts.data.get(key, info.default) for key, info in opts.data_labels.items() if not info.do_not_save}

    def set_config(self, req: dict[str, object]):
        # clients such as Open WebUI post back the whole dict GET gave them: a value left as it is changes nothing
        current = self.get_config()
        req = {key: value for key, value in req.items()
               if key not in current or key == "sd_model_checkpoint" or value != current[key]}
        for key, value in req.items():
            if key not in opts.data_labels:
                raise HTTPException(status_code=422, detail=f"Unknown setting: {key}")
            if opts.data_labels[key].restrict_api:
                raise HTTPException(status_code=403, detail=f"Setting {key} cannot be changed through the API")
            if key != "sd_model_checkpoint":
                try:
                    opts.check_value(key, value)
                except ValueError as e:
                    raise unprocessable(e) from e
        for key, value in req.items():
            if key == "sd_model_checkpoint":
                self.switch_checkpoint(str(value))
            elif not opts.set(key, value, is_api=True) and getattr(opts, key) != value:
                raise HTTPException(status_code=422, detail=f"Setting {key} was not changed: refused value {value!r}")
        opts.save(cmd_opts.ui_settings_file)
        return {}

    def switch_checkpoint(self, wanted: str) -> None:
        info = sd_models.get_closet_checkpoint_match(wanted)
        if info is None:
            raise HTTPException(status_code=404, detail=f"Checkpoint not found: {wanted}. Available: "
                                                        f"{', '.join(sd_models.checkpoint_registry.titles()) or 'none'}")
        self.run_job("load checkpoint", sd_models.model_manager.get, info)
        opts.set("sd_model_checkpoint", info.title, is_api=True)

    def get_cmd_flags(self):
        """The command line as A1111 shows it, but with the passwords of --api-auth and --gradio-auth masked."""
        return {key: SECRET_MASK if key in SECRET_FLAGS and value else value for key, value in vars(cmd_opts).items()}

    # server commands (--api-server-stop), as A1111

    def kill_webui(self):
        log.info("Stopping the server at once (/sdapi/v1/server-kill)")
        os._exit(0)

    def restart_webui(self):
        state.server_command = "restart"  # the serving loop reloads the scripts and builds the app again
        return Response("Restarting.")

    def stop_webui(self):
        state.server_command = "stop"
        return Response("Stopping.")

    # lists

    def get_samplers(self):
        return [{"name": s.name, "aliases": list(s.aliases),
                 "options": {"scheduler": s.default_scheduler, **{k: True for k in ("second_order", "ancestral", "brownian")
                                                                   if getattr(s, k)}}}
                for s in sd_samplers.all_samplers]

    def get_schedulers(self):
        """A1111's list: "automatic" (each sampler's own default) first, then the schedule types."""
        automatic = {"name": "automatic", "label": sd_samplers.AUTOMATIC, "aliases": None, "default_rho": -1,
                     "need_inner_model": False}
        return [automatic] + [{"name": s.name, "label": s.label, "aliases": list(s.aliases) or None,
                               "default_rho": s.default_rho, "need_inner_model": s.need_inner_model}
                              for s in sd_schedulers.schedulers]

    def get_upscalers(self):
        if not upscaler.sd_upscalers:
            upscaler.refresh_upscalers(cmd_opts)
        return [{"name": u.name, "model_name": getattr(u.scaler, "model_name", None), "model_path": u.data_path,
                 "model_url": None, "scale": u.scale} for u in upscaler.sd_upscalers]

    def get_realesrgan_models(self):
        if not upscaler.sd_upscalers:
            upscaler.refresh_upscalers(cmd_opts)
        return [{"name": u.name, "path": u.data_path, "scale": u.scale} for u in upscaler.sd_upscalers
                if type(u.scaler).__name__ == "UpscalerRealESRGAN"]

    def get_sd_modules(self):
        """Forge's list of the separate model parts one can add to a checkpoint: the VAE and text encoder files."""
        encoders = flux_loader.module_files(paths_internal.models_path, (flux_loader.TEXT_ENCODER_DIR,))
        return [{"model_name": name, "filename": path} for name, path in sd_vae.vae_dict.items()] + \
            [{"model_name": path.name, "filename": str(path)} for path in encoders]

    def get_latent_upscale_modes(self):
        return [{"name": name} for name in processing.LATENT_UPSCALE_MODES]

    def get_sd_models(self):
        return [{"title": i.title, "model_name": i.model_name, "hash": i.shorthash, "sha256": i.sha256,
                 "filename": i.filename, "config": None} for i in sd_models.checkpoint_registry.checkpoints_list.values()]

    def get_sd_vaes(self):
        return [{"model_name": name, "filename": path} for name, path in sd_vae.vae_dict.items()]

    def get_hypernetworks(self):
        return [{"name": name, "path": path} for name, path in hypernetworks.hypernetworks.items()]

    def get_face_restorers(self):
        if not face_restoration.face_restorers:
            face_restoration.setup_face_restorers(cmd_opts)
        return [{"name": r.name(), "cmd_dir": getattr(r, "model_path", None)} for r in face_restoration.face_restorers]

    def get_prompt_styles(self):
        return [{"name": s.name, "prompt": s.prompt, "negative_prompt": s.negative_prompt}
                for s in styles.prompt_styles().styles.values()]

    def get_embeddings(self):
        db = textual_inversion.embedding_db()
        model = sd_models.model_manager.current if sd_models.model_manager else None
        if model is not None:
            loaded, skipped = db.usable_for(model), db.skipped_embeddings
        else:
            db.load_textual_inversion_embeddings()
            loaded, skipped = db.word_embeddings, {}

        def item(e):
            return {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": e.shape, "vectors": e.vectors}

        return {"loaded": {n: item(e) for n, e in loaded.items()}, "skipped": {n: item(e) for n, e in skipped.items()}}

    def get_loras(self):
        if not networks.available_networks:
            networks.list_available_networks()
        return [{"name": n.name, "alias": n.alias, "path": n.filename, "metadata": n.metadata}
                for n in networks.available_networks.values()]

    def refresh_embeddings(self):
        textual_inversion.embedding_db().load_textual_inversion_embeddings(force_reload=True)
        return {}

    def refresh_checkpoints(self):
        self.run_job("refresh checkpoints", sd_models.list_models, cmd_opts)
        return {}

    def refresh_vae(self):
        sd_vae.refresh_vae_list(cmd_opts)
        return {}

    def refresh_loras(self):
        networks.list_available_networks()
        return {}

    def unloadapi(self):
        self.run_job("unload checkpoint", sd_models.model_manager.unload_all)
        return {}

    def reloadapi(self):
        self.run_job("reload checkpoint", processing.main_model, processing.StableDiffusionProcessingTxt2Img())
        return {}

    def get_memory(self):
        import psutil
        import torch

        ram = psutil.virtual_memory()
        result = {"ram": {"free": ram.available, "used": ram.total - ram.available, "total": ram.total}}
        if not torch.cuda.is_available():
            return {**result, "cuda": {"error": "CUDA is not available"}}
        free, total = torch.cuda.mem_get_info()
        stats = torch.cuda.memory_stats()

        def pair(name):
            return {"current": stats.get(f"{name}.all.current", 0), "peak": stats.get(f"{name}.all.peak", 0)}

        return {**result, "cuda": {
            "system": {"free": free, "used": total - free, "total": total},
            "active": pair("active_bytes"), "allocated": pair("allocated_bytes"), "reserved": pair("reserved_bytes"),
            "inactive": pair("inactive_split_bytes"),
            "events": {"retries": stats.get("num_alloc_retries", 0), "oom": stats.get("num_ooms", 0)}}}

    # scripts and extensions

    def get_scripts_list(self):
        """The lower-cased titles of each tab's scripts that have controls (A1111)."""
        runners = {"txt2img": scripts.scripts_txt2img.ensure_args(False), "img2img": scripts.scripts_img2img.ensure_args(True)}
        return {tab: [s.name for s in runner.scripts if s.api_info is not None] for tab, runner in runners.items()}

    def get_script_info(self):
        runners = (scripts.scripts_txt2img.ensure_args(False), scripts.scripts_img2img.ensure_args(True))
        return [dataclasses.asdict(s.api_info) for runner in runners for s in runner.scripts if s.api_info is not None]

    def get_extensions_list(self):
        """A1111's list: the extensions that are git clones, with their commit."""
        extensions.list_extensions()
        listed = []
        for ext in extensions.extensions:
            ext.read_info_from_repo()
            if ext.remote is not None:
                listed.append({"name": ext.name, "remote": ext.remote, "branch": ext.branch, "commit_hash": ext.commit_hash,
                               "version": ext.version, "commit_date": ext.commit_date, "enabled": ext.enabled})
        return listed

    # Atelier's: changes to extensions, refused (403) as in the UI when the server is reachable from the network

    def change_extensions(self, change, *args):
        try:
            return change(*args)
        except extensions.ExtensionAccessError as e:
            raise HTTPException(status_code=403, detail=str(e)) from e
        except (ValueError, extensions.GitError) as e:
            raise unprocessable(e) from e

    def install_extension(self, req: ExtensionInstallRequest):
        path = self.change_extensions(extensions.install_extension_from_url, req.dirname, req.url, req.branch)
        return {"name": os.path.basename(path), "path": path}

    def update_extension(self, req: ExtensionNameRequest):
        ext = self.change_extensions(extensions.update_extension, req.name)
        return {"name": ext.name, "commit_hash": ext.commit_hash, "version": ext.version}

    def delete_extension(self, req: ExtensionNameRequest):
        return {"name": req.name, "path": self.change_extensions(extensions.delete_extension, req.name)}


class ExtensionInstallRequest(BaseModel):
    url: str = Field(description="git URL: https://, http://, ssh://, git@host:path or file://")
    branch: str | None = Field(default=None, description="branch to clone (default: the repository's default branch)")
    dirname: str | None = Field(default=None, description="folder name in extensions/ (default: the repository's name)")


class ExtensionNameRequest(BaseModel):
    name: str = Field(description="the extension's folder name in extensions/")
