"""Batching compatible queued requests: which txt2img jobs may share one sampling batch, and running them as one
StableDiffusionProcessing whose images carry each job's prompt, negative prompt, seeds and CFG scale, split back into
one response per job (its own images, infotexts and info)."""
from __future__ import annotations

import copy
import json

from modules import extra_networks, processing
from modules.api import models
from modules.job_store import Job

PER_IMAGE = {"prompt", "negative_prompt", "seed", "subseed", "cfg_scale", "batch_size"}
PER_JOB = {"send_images", "force_task_id"}  # only shape the job's own answer


def batch_key(job: Job) -> str | None:
    """What jobs must share to run in one batch (None: this job runs alone): every field but the per-image ones,
    plus the extra networks its prompt activates (a batch activates the first prompt's for every image). Jobs with
    a script, a pasted infotext, several batches or saved images (their grid is per job) run alone; so does img2img."""
    if job.kind != "txt2img":
        return None
    req = models.StableDiffusionTxt2ImgProcessingAPI.model_validate(job.request)
    if req.script_name or req.alwayson_scripts or req.infotext or req.n_iter != 1 or req.save_images:
        return None
    fields = req.model_dump(mode="json", exclude=PER_IMAGE | PER_JOB)
    fields["sampler_name"] = req.sampler_name or req.sampler_index
    fields.pop("sampler_index", None)
    fields["networks"] = {kind: sorted(params.items for params in found)
                          for kind, found in extra_networks.parse_prompt(req.prompt or "")[1].items()}
    return json.dumps(fields, sort_keys=True, default=str)


def compatible(first: Job, other: Job) -> bool:
    key = batch_key(first)
    return key is not None and key == batch_key(other)


def run_batch(api, jobs: list[Job]) -> list[dict]:
    """Run compatible `jobs` as one sampling batch; A1111's txt2img response for each, in their order."""
    from modules.api.api import encode_pil_to_base64  # api imports this module (through jobs)

    reqs = [models.StableDiffusionTxt2ImgProcessingAPI.model_validate(job.request) for job in jobs]
    for req in reqs:
        api.validate_generation(req)
    cls = processing.StableDiffusionProcessingTxt2Img
    p = cls(**api.processing_args(reqs[0], cls))
    counts = [req.batch_size for req in reqs]
    varied = p.subseed_strength > 0  # shared by the batch (not a per-image field)
    seeds, subseeds = [processing.get_fixed_seed(req.seed) for req in reqs], [processing.get_fixed_seed(req.subseed) for req in reqs]
    p.prompt = [req.prompt for req, n in zip(reqs, counts) for _ in range(n)]
    p.negative_prompt = [req.negative_prompt or "" for req, n in zip(reqs, counts) for _ in range(n)]
    p.seed = [seed if varied else seed + i for seed, n in zip(seeds, counts) for i in range(n)]  # as each job alone
    p.subseed = [seed + i for seed, n in zip(subseeds, counts) for i in range(n)]
    p.all_cfg_scales = [req.cfg_scale for req, n in zip(reqs, counts) for _ in range(n)]
    p.batch_size = sum(counts)
    p.scripts = api.script_runner(reqs[0])
    p.script_args = api.script_args(reqs[0], p.scripts)
    processed = api.logged_job("txt2img", processing.run_with_scripts, p)
    results, start = [], processed.index_of_first_image
    for req, n, seed, subseed in zip(reqs, counts, seeds, subseeds):
        own = slice(start, start + n)
        share = slice(own.start - processed.index_of_first_image, own.stop - processed.index_of_first_image)
        start += n
        alone = copy.copy(p)  # the job as if it had run alone: its own fields in `info`
        alone.prompt, alone.negative_prompt, alone.cfg_scale, alone.batch_size = \
            req.prompt, req.negative_prompt, req.cfg_scale, n
        alone.seed, alone.subseed = seed, subseed
        alone.all_prompts, alone.all_negative_prompts = p.all_prompts[share], p.all_negative_prompts[share]
        alone.all_seeds, alone.all_subseeds, alone.all_cfg_scales = p.all_seeds[share], p.all_subseeds[share], []
        mine = processing.Processed(alone, processed.images[own], infotexts=processed.infotexts[own])
        results.append({"images": [encode_pil_to_base64(image) for image in mine.images] if req.send_images else [],
                        "parameters": req.model_dump(), "info": mine.js()})
    return results
