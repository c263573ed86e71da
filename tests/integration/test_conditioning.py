"""Conditioning on the tiny checkpoints: emphasis, chunks and BREAK, per-step prompt editing and alternation, AND,
and the prompt preparation of a job (styles, comments, Emphasis infotext)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from modules import processing, sd_models
from modules.prompt_encoding import PromptEncoder
from modules.sd_samplers_cfg_denoiser import CFGDenoiser
from modules.shared_cmd_options import cmd_opts
from modules.shared_state import state
from tests.integration.engine_helpers import pixels, start_engine, txt2img

SD1 = "tiny_sd1"
SDXL = "tiny_sdxl"


@pytest.fixture(scope="module")
def module_engine(tiny_models_dir, tmp_path_factory):
    return start_engine(tiny_models_dir, tmp_path_factory.mktemp("data"))


@pytest.fixture()
def engine(module_engine):
    sd_models.model_manager = module_engine
    return module_engine


def load(name: str):
    txt2img(name, steps=1)
    return sd_models.model_manager.current


def encode(model, text: str, emphasis: str = "Original", negative: bool = False) -> torch.Tensor:
    with torch.inference_mode():
        return PromptEncoder(model, emphasis=emphasis).encode([text], is_negative=negative).context


def unet_contexts(model, run) -> list[torch.Tensor]:
    """The encoder_hidden_states handed to the UNet, one entry per UNet evaluation of run()."""
    seen = []
    handle = model.unet.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(kwargs["encoder_hidden_states"].detach().clone()), with_kwargs=True)
    try:
        run()
    finally:
        handle.remove()
    return seen


def which(context: torch.Tensor, candidates: dict[str, torch.Tensor]) -> str:
    matches = [name for name, c in candidates.items() if torch.allclose(context, c[0], atol=1e-5)]
    assert len(matches) == 1, f"the conditioning matches {matches}"
    return matches[0]


def test_emphasis_scales_exactly_the_words_tokens_and_original_keeps_the_mean(engine):
    model = load(SD1)
    tokenizer = model.tokenizers["tokenizer"]
    cat = tokenizer("cat", add_special_tokens=False)["input_ids"][0]
    ids = tokenizer("a cat sits", add_special_tokens=False)["input_ids"]
    position = 1 + ids.index(cat)  # after the start token
    plain = encode(model, "a cat sits", "No norm")
    no_norm = encode(model, "a (cat:1.5) sits", "No norm")
    original = encode(model, "a (cat:1.5) sits", "Original")
    others = [i for i in range(77) if i != position]
    assert torch.equal(no_norm[0, position], plain[0, position] * 1.5)
    assert torch.equal(no_norm[0, others], plain[0, others])
    assert torch.allclose(original, no_norm * (plain.mean() / no_norm.mean()))
    assert torch.allclose(original.mean(), plain.mean(), rtol=1e-5)
    assert not torch.allclose(original[0, position], plain[0, position])


def test_escaped_brackets_are_literal_text(engine):
    model = load(SD1)
    escaped = encode(model, r"a \(cat\) sits")
    as_text = encode(model, "a (cat) sits", "None")  # emphasis "None": brackets are text
    emphasised = encode(model, "a (cat) sits")
    assert torch.allclose(escaped, as_text, atol=1e-6)
    assert not torch.allclose(escaped, emphasised, atol=1e-4)


def test_long_prompt_gives_two_chunks_and_break_forces_one(engine):
    model = load(SD1)
    assert encode(model, " ".join(["cat"] * 100)).shape[1] == 154
    assert encode(model, "cat dog").shape[1] == 77
    broken = encode(model, "cat BREAK dog")
    assert broken.shape[1] == 154
    assert torch.allclose(broken[:, 77:], encode(model, "dog"), atol=1e-5)
    assert torch.allclose(broken[:, :77], encode(model, "cat"), atol=1e-5)


def test_sdxl_long_prompt_chunks_both_encoders(engine):
    model = load(SDXL)
    context = encode(model, " ".join(["cat"] * 100))
    assert context.shape[1:] == (154, 64 + 128)


def test_prompt_editing_switches_at_the_documented_step(engine):
    """[cat:dog:0.5] with 10 steps: steps 0-4 see cat's conditioning, 5-9 dog's."""
    model = load(SD1)
    candidates = {"cat": encode(model, "cat"), "dog": encode(model, "dog")}
    seen = unet_contexts(model, lambda: txt2img(SD1, prompt="[cat:dog:0.5]", steps=10, sampler_name="Euler"))
    assert [which(c[0], candidates) for c in seen] == ["cat"] * 5 + ["dog"] * 5
    blurry = encode(model, "blurry", negative=True)
    assert all(torch.allclose(c[1], blurry[0], atol=1e-5) for c in seen)  # the negative prompt is not edited


def test_negative_prompt_editing_with_absolute_step(engine):
    model = load(SD1)
    candidates = {"blurry": encode(model, "blurry", negative=True), "sharp": encode(model, "sharp", negative=True)}
    seen = unet_contexts(model, lambda: txt2img(SD1, negative_prompt="[blurry:sharp:2]", steps=5, sampler_name="Euler"))
    assert [which(c[1], candidates) for c in seen] == ["blurry"] * 2 + ["sharp"] * 3


def test_alternation_changes_every_step(engine):
    model = load(SD1)
    candidates = {"cat": encode(model, "cat"), "dog": encode(model, "dog")}
    seen = unet_contexts(model, lambda: txt2img(SD1, prompt="[cat|dog]", steps=6, sampler_name="Euler"))
    assert [which(c[0], candidates) for c in seen] == ["cat", "dog", "cat", "dog", "cat", "dog"]


def test_second_order_sampler_counts_evaluations(engine):
    """Heun evaluates twice per step; A1111 schedules on 2 x steps evaluations."""
    model = load(SD1)
    candidates = {"cat": encode(model, "cat"), "dog": encode(model, "dog")}
    seen = unet_contexts(model, lambda: txt2img(SD1, prompt="[cat:dog:0.5]", steps=4, sampler_name="Heun"))
    assert len(seen) == 7  # the last step has no second evaluation
    assert [which(c[0], candidates) for c in seen] == ["cat"] * 4 + ["dog"] * 3


def test_and_composes_weighted_sub_prompts(engine):
    model = load(SD1)
    p = processing.StableDiffusionProcessingTxt2Img(steps=4, sampler_name="Euler")

    def denoised(prompt: str, cfg: float) -> torch.Tensor:
        stage = processing.make_stage(model, p, [prompt], [""], 64, 64)
        x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            return CFGDenoiser().prepare(stage, cfg, state)(x, torch.tensor([3.0]))

    cat, dog, empty = denoised("cat", 1.0), denoised("dog", 1.0), denoised("", 1.0)
    seen = unet_contexts(model, lambda: denoised("cat :1.5 AND dog :0.5", 7.0))
    assert len(seen) == 1 and seen[0].shape[0] == 3, "both sub-prompts and the negative run as one UNet batch"
    composed = denoised("cat :1.5 AND dog :0.5", 7.0)
    expected = empty + 7.0 * (1.5 * (cat - empty) + 0.5 * (dog - empty))
    unweighted = empty + 7.0 * ((cat - empty) + (dog - empty))
    assert torch.allclose(composed, expected, atol=1e-3)  # the 3-row UNet batch rounds a little differently
    assert not torch.allclose(composed, unweighted, atol=1e-2)


def test_and_in_a_job_changes_the_image(engine):
    cat = txt2img(SD1, prompt="cat").images[0]
    both = txt2img(SD1, prompt="cat AND dog").images[0]
    assert not np.array_equal(pixels(cat), pixels(both))


def test_styles_and_comments_are_applied_before_encoding(engine, tmp_path, monkeypatch):
    styles_file = tmp_path / "styles.csv"
    styles_file.write_text('name,prompt,negative_prompt\nframed,"a photo of {prompt}, framed",ugly\n', encoding="utf-8-sig")
    monkeypatch.setattr(cmd_opts, "styles_file", [str(styles_file)])
    styled = txt2img(SD1, prompt="a cube # not this\n", negative_prompt="blurry", styles=["framed"])
    assert styled.info.startswith("a photo of a cube \n, framed\nNegative prompt: blurry, ugly\n")
    same = txt2img(SD1, prompt="a photo of a cube \n, framed", negative_prompt="blurry, ugly")
    assert np.array_equal(pixels(styled.images[0]), pixels(same.images[0]))


def test_emphasis_infotext_only_when_not_original_and_used(engine):
    assert "Emphasis" not in txt2img(SD1, prompt="a (cube:1.2)", steps=1).info
    no_norm = txt2img(SD1, prompt="a (cube:1.2)", steps=1, override_settings={"emphasis": "No norm"})
    assert "Emphasis: No norm" in no_norm.info
    assert "Emphasis" not in txt2img(SD1, prompt="a cube", steps=1, override_settings={"emphasis": "No norm"}).info


def test_a_very_long_prompt_is_encoded_in_groups_with_the_same_result(engine, monkeypatch):
    model = load(SD1)
    text = ", ".join(f"cube {i}" for i in range(900))  # about 40 chunks: two groups
    grouped = encode(model, text)
    monkeypatch.setattr("modules.prompt_encoding.ENCODE_GROUP", 10_000)
    assert grouped.shape[1] > 32 * 77 and torch.allclose(grouped, encode(model, text), atol=1e-5)


def test_interrupt_while_encoding_a_long_prompt_stops_before_the_next_group_and_any_sampling_step(engine):
    """Interrupt during prompt encoding (issue 17 item 5): the encoder stops before its next group of chunks and the
    sampler never runs; the job still answers with its one (unfinished) image, as after an interrupt in sampling."""
    model = load(SD1)
    groups, results = [], []

    def interrupt_on_first_group(module, args, output):
        groups.append(args[0].shape[0])
        state.interrupt()

    handle = next(iter(model.text_encoders.values())).register_forward_hook(interrupt_on_first_group)
    try:
        contexts = unet_contexts(model, lambda: results.append(
            txt2img(SD1, prompt=", ".join(f"cube {i}" for i in range(900)), steps=4)))
    finally:
        handle.remove()
        state.interrupted = False
    assert groups == [32]  # one group of 32 chunks encoded, then the interrupt took effect
    assert contexts == [] and len(results[0].images) == 1


def test_a_prompt_longer_than_the_limit_after_styles_is_refused_before_any_work(engine):
    with pytest.raises(ValueError, match="negative_prompt is 20001 characters long; at most 20000 are accepted"):
        txt2img(SD1, negative_prompt="x" * 20_001)
