"""Prompt matrix (A1111's built-in script): the prompt's `|`-separated parts in every combination, as a labelled grid."""
import copy
import logging

import gradio as gr

from modules import images, processing, scripts
from modules.shared_options import opts
from modules.shared_state import state

log = logging.getLogger(__name__)

DELIMITERS = {"comma": ", ", "space": " "}


def matrix_prompts(prompt: str, put_at_start: bool, delimiter: str) -> list[str]:
    """The first part always, plus each subset of the other parts: part n is in prompt i when bit n of i is set."""
    parts = prompt.split("|")
    prompts = []
    for combination in range(1 << (len(parts) - 1)):
        chosen = [text.strip().strip(",") for n, text in enumerate(parts[1:]) if combination & (1 << n)]
        prompts.append(delimiter.join([*chosen, parts[0]] if put_at_start else [parts[0], *chosen]))
    return prompts


def collect(results, jobs, grid, pictures, infotexts):
    """One Processed for all the jobs: the grid first, then every picture with its own infotext."""
    result = copy.copy(results[0])
    result.images = [grid, *pictures]
    result.infotexts = [infotexts[0], *infotexts]
    result.index_of_first_image = 1
    return processing.gather_job_records(result, jobs)


class Script(scripts.Script):
    def title(self):
        return "Prompt matrix"

    def args_spec(self, is_img2img):
        return [
            scripts.ScriptArgSpec("put_at_start", "Put variable parts at start of prompt", False),
            scripts.ScriptArgSpec("different_seeds", "Use different seed for each picture", False),
            scripts.ScriptArgSpec("prompt_type", "Select prompt", "positive", choices=["positive", "negative"]),
            scripts.ScriptArgSpec("variations_delimiter", "Select joining char", "comma", choices=list(DELIMITERS)),
            scripts.ScriptArgSpec("margin_size", "Grid margins (px)", 0, minimum=0, maximum=500, step=2),
        ]

    def ui(self, is_img2img):
        gr.HTML("<br />")
        with gr.Row():
            with gr.Column():
                put_at_start = gr.Checkbox(label="Put variable parts at start of prompt", value=False,
                                           elem_id=self.elem_id("put_at_start"))
                different_seeds = gr.Checkbox(label="Use different seed for each picture", value=False,
                                              elem_id=self.elem_id("different_seeds"))
            with gr.Column():
                prompt_type = gr.Radio(["positive", "negative"], label="Select prompt", value="positive",
                                       elem_id=self.elem_id("prompt_type"))
                variations_delimiter = gr.Radio(list(DELIMITERS), label="Select joining char", value="comma",
                                                elem_id=self.elem_id("variations_delimiter"))
            with gr.Column():
                margin_size = gr.Slider(label="Grid margins (px)", minimum=0, maximum=500, value=0, step=2,
                                        elem_id=self.elem_id("margin_size"))
        return [put_at_start, different_seeds, prompt_type, variations_delimiter, margin_size]

    def run(self, p, put_at_start, different_seeds, prompt_type, variations_delimiter, margin_size):
        if prompt_type not in ("positive", "negative"):
            raise ValueError(f"Unknown prompt type {prompt_type}: choose positive or negative")
        if variations_delimiter not in DELIMITERS:
            raise ValueError(f"Unknown joining char {variations_delimiter}: choose comma or space")
        processing.fix_seed(p)
        source = p.prompt if prompt_type == "positive" else p.negative_prompt
        source = source[0] if isinstance(source, list) else source
        prompts = matrix_prompts(source, put_at_start, DELIMITERS[variations_delimiter])
        log.info("Prompt matrix: %d images", len(prompts))

        jobs, results = [], []
        for i, prompt in enumerate(prompts):
            # one job per combination, so every image is exactly what its own infotext reproduces
            job = copy.copy(p)
            job.extra_generation_params = dict(p.extra_generation_params)
            job.override_settings = dict(p.override_settings)
            job.comments = dict(p.comments)
            job.batch_size, job.n_iter, job.do_not_save_grid = 1, 1, True
            job.seed = p.seed + (i if different_seeds else 0)
            if prompt_type == "positive":
                job.prompt = prompt
            else:
                job.negative_prompt = prompt
            results.append(processing.process_images(job))
            jobs.append(job)
            if state.interrupted:
                break

        pictures = [image for r in results for image in r.images[r.index_of_first_image:]]
        infotexts = [text for r in results for text in r.infotexts[r.index_of_first_image:]]
        if len(pictures) < len(prompts):  # interrupted: no complete matrix to draw
            return results[0] if not pictures else collect(results, jobs, images.image_grid(pictures), pictures, infotexts)
        parts = [part.strip() for part in source.split("|")]
        grid = images.image_grid(pictures, rows=1 << ((len(parts) - 1) // 2))
        grid = images.draw_prompt_matrix(grid, max(i.width for i in pictures), max(i.height for i in pictures), parts,
                                         int(margin_size or 0))
        if opts.grid_save and not p.do_not_save_grid:
            images.save_image(grid, jobs[0].outpath_grids, "prompt_matrix", jobs[0].all_seeds[0], source, opts.grid_format,
                              info=infotexts[0], short_filename=not opts.grid_extended_filename, p=jobs[0], grid=True)
        return collect(results, jobs, grid, pictures, infotexts)
