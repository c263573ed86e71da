"""Prompts from file or textbox (A1111's built-in script): one job per line; a line of `--key value` pairs sets fields."""
import copy
import logging
import shlex
from collections.abc import Callable

import gradio as gr

from modules import generation_parameters, processing, scripts, sd_models, sd_samplers
from modules.shared_state import state

log = logging.getLogger(__name__)

PROMPT_POSITIONS = ["start", "end", "replace"]


parse_bool = generation_parameters.parse_bool
parse_styles = generation_parameters.split_styles


def parse_sampler(text: str) -> str:
    sampler = sd_samplers.find_sampler(text)
    if sampler is None:
        raise ValueError(f"unknown sampler {text!r}; valid choices: {', '.join(s.name for s in sd_samplers.all_samplers)}")
    return sampler.name


def parse_sampler_index(text: str) -> str:
    index = int(text)
    if not 0 <= index < len(sd_samplers.all_samplers):
        raise ValueError(f"sampler index {index} is out of range (0-{len(sd_samplers.all_samplers) - 1})")
    return sd_samplers.all_samplers[index].name


def parse_checkpoint(text: str) -> str:
    info = sd_models.get_closet_checkpoint_match(text)
    if info is None:
        raise ValueError(f"unknown checkpoint {text!r}")
    return info.title


def build_prompt_tags() -> dict[str, tuple[str, Callable]]:
    """option -> (processing attribute, parser): A1111's list, the generation parameters from the table. sd_model
    becomes an override of the checkpoint setting; sampler names are checked against the samplers there are."""
    return {"sd_model": ("sd_model", parse_checkpoint), "outpath_samples": ("outpath_samples", str),
            "outpath_grids": ("outpath_grids", str), "prompt_for_display": ("prompt_for_display", str),
            **generation_parameters.file_options(), "sampler_index": ("sampler_name", parse_sampler_index),
            "sampler_name": ("sampler_name", parse_sampler), "do_not_save_samples": ("do_not_save_samples", parse_bool),
            "do_not_save_grid": ("do_not_save_grid", parse_bool)}


prompt_tags = build_prompt_tags()
MULTI_WORD_TAGS = ("prompt", "negative_prompt")  # their value runs up to the next --option, quoted or not


def parse_line(line: str) -> dict:
    """`--key value ...` into {attribute: value}; a line not starting with `--` is a prompt."""
    if not line.startswith("--"):
        return {"prompt": line}
    try:
        words = shlex.split(line)
    except ValueError as error:
        raise ValueError(f"Cannot read line {line!r}: {error}") from None
    result, pos = {}, 0
    while pos < len(words):
        word = words[pos]
        if not word.startswith("--"):
            raise ValueError(f"Expected an --option but found {word!r} in line: {line}")
        tag = word[2:]
        if tag not in prompt_tags:
            raise ValueError(f"Unknown option {word} in line: {line}; known options: "
                             f"{', '.join('--' + t for t in prompt_tags)}")
        if pos + 1 >= len(words) or words[pos + 1].startswith("--"):
            raise ValueError(f"Option {word} has no value in line: {line}")
        end = pos + 2
        if tag in MULTI_WORD_TAGS:
            while end < len(words) and not words[end].startswith("--"):
                end += 1
        attribute, parse = prompt_tags[tag]
        try:
            result[attribute] = parse(" ".join(words[pos + 1:end]))
        except ValueError as error:
            raise ValueError(f"Option {word} in line {line!r}: {error}") from None
        pos = end
    return result


def combine_prompts(base: str, line_prompt: str, position: str) -> str:
    """Where a line's prompt goes relative to the prompt in the UI."""
    if position == "replace" or not base:
        return line_prompt
    return f"{line_prompt} {base}" if position == "start" else f"{base} {line_prompt}"


def line_job(p, args: dict, position: str):
    job = copy.copy(p)
    job.extra_generation_params = dict(p.extra_generation_params)
    job.override_settings = dict(p.override_settings)
    job.comments = dict(p.comments)
    job.styles = list(p.styles)
    job.do_not_save_grid = True  # one grid per line would only clutter the grids folder
    for attribute, value in args.items():
        if attribute == "sd_model":
            job.override_settings["sd_model_checkpoint"] = value
            job.sd_model = None  # a model already chosen for the job would win over the setting
        elif attribute in MULTI_WORD_TAGS:
            setattr(job, attribute, combine_prompts(getattr(p, attribute) or "", value, position))
        else:
            setattr(job, attribute, value)
    return job


def load_prompt_file(file):
    """An uploaded .txt file's lines into the textbox."""
    if file is None:
        return None, gr.update(), gr.update(lines=7)
    lines = [line.strip() for line in file.decode("utf8", errors="ignore").splitlines()]
    return None, "\n".join(lines), gr.update(lines=7)


class Script(scripts.Script):
    def title(self):
        return "Prompts from file or textbox"

    def args_spec(self, is_img2img):
        return [
            scripts.ScriptArgSpec("checkbox_iterate", "Iterate seed every line", False),
            scripts.ScriptArgSpec("checkbox_iterate_batch", "Use same random seed for all lines", False),
            scripts.ScriptArgSpec("prompt_position", "Insert prompts at the", "start", choices=PROMPT_POSITIONS),
            scripts.ScriptArgSpec("prompt_txt", "List of prompt inputs"),
        ]

    def ui(self, is_img2img):
        checkbox_iterate = gr.Checkbox(label="Iterate seed every line", value=False, elem_id=self.elem_id("checkbox_iterate"))
        checkbox_iterate_batch = gr.Checkbox(label="Use same random seed for all lines", value=False,
                                             elem_id=self.elem_id("checkbox_iterate_batch"))
        prompt_position = gr.Radio(PROMPT_POSITIONS, label="Insert prompts at the", value="start",
                                   elem_id=self.elem_id("prompt_position"))
        prompt_txt = gr.Textbox(label="List of prompt inputs", lines=1, elem_id=self.elem_id("prompt_txt"))
        file = gr.File(label="Upload prompt inputs", type="binary", file_types=[".txt"], elem_id=self.elem_id("file"))
        file.change(fn=load_prompt_file, inputs=[file], outputs=[file, prompt_txt, prompt_txt], show_progress="hidden")
        # the box grows once it holds several lines (it never shrinks back to one, where Enter would not add a line)
        prompt_txt.change(lambda text: gr.update(lines=7 if "\n" in text else 2), inputs=[prompt_txt], outputs=[prompt_txt],
                          show_progress="hidden")
        return [checkbox_iterate, checkbox_iterate_batch, prompt_position, prompt_txt]

    def run(self, p, checkbox_iterate, checkbox_iterate_batch, prompt_position, prompt_txt):
        if prompt_position not in PROMPT_POSITIONS:
            raise ValueError(f"Unknown prompt position {prompt_position}: choose {', '.join(PROMPT_POSITIONS)}")
        lines = [line.strip() for line in (prompt_txt or "").splitlines() if line.strip()]
        if not lines:
            raise ValueError("Prompts from file or textbox: no prompts given")
        jobs_args = [parse_line(line) for line in lines]  # every line checked before the first image
        log.info("Prompts from file: %d lines", len(lines))
        if checkbox_iterate or checkbox_iterate_batch:
            p.seed = processing.get_fixed_seed(p.seed)

        results, jobs = [], []
        for args in jobs_args:
            job = line_job(p, args, prompt_position)
            results.append(processing.process_images(job))
            jobs.append(job)
            if checkbox_iterate:
                p.seed += job.batch_size * job.n_iter  # the next line starts after this line's last seed
            if state.interrupted:
                break

        result = copy.copy(results[0])
        result.images = [image for r in results for image in r.images[r.index_of_first_image:]]
        result.infotexts = [text for r in results for text in r.infotexts[r.index_of_first_image:]]
        result.info = result.infotexts[0] if result.infotexts else ""
        result.index_of_first_image = 0
        return processing.gather_job_records(result, jobs)
