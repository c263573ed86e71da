"""The infotext writer: A1111's exact layout and quoting (reference §3.2, §3.5)."""
import pytest

from modules.infotext_utils import create_infotext, quote

EXAMPLE_1 = """masterpiece, a cozy wooden cabin in a snowy forest, warm window light, (volumetric fog:1.2)
Negative prompt: lowres, blurry, watermark
Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234567890, Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.10.1"""

EXAMPLE_5 = """portrait of an old sailor, oil painting, rembrandt lighting
Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 1000, Size: 512x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Variation seed: 2000, Variation seed strength: 0.3, Seed resize from: 512x640, ENSD: 31337, RNG: CPU, Version: v1.10.1"""


def test_example_1_plain_txt2img():
    params = {
        "Steps": 20, "Sampler": "DPM++ 2M", "Schedule type": "Karras", "CFG scale": 7, "Seed": 1234567890,
        "Size": "512x768", "Model hash": "6ce0161689", "Model": "v1-5-pruned-emaonly", "Version": "v1.10.1",
    }
    prompt = "masterpiece, a cozy wooden cabin in a snowy forest, warm window light, (volumetric fog:1.2)"
    assert create_infotext(prompt, "lowres, blurry, watermark", params) == EXAMPLE_1


def test_example_5_no_negative_prompt_line():
    params = {
        "Steps": 20, "Sampler": "Euler a", "Schedule type": "Automatic", "CFG scale": 7, "Seed": 1000, "Size": "512x512",
        "Model hash": "6ce0161689", "Model": "v1-5-pruned-emaonly", "Variation seed": 2000, "Variation seed strength": 0.3,
        "Seed resize from": "512x640", "ENSD": 31337, "RNG": "CPU", "Version": "v1.10.1",
    }
    assert create_infotext("portrait of an old sailor, oil painting, rembrandt lighting", "", params) == EXAMPLE_5


def test_none_values_are_omitted_and_key_equal_to_value_written_alone():
    params = {"Steps": 20, "Face restoration": None, "Tiling": "Tiling", "Seed": 5}
    assert create_infotext("p", "n", params) == "p\nNegative prompt: n\nSteps: 20, Tiling, Seed: 5"


def test_quoted_values_inside_the_parameter_line():
    params = {"Steps": 20, "X Values": "5, 7, 9", "Lora hashes": "add_detail: 7c6bad76eb54"}
    text = create_infotext("a cat", "", params)
    assert text == 'a cat\nSteps: 20, X Values: "5, 7, 9", Lora hashes: "add_detail: 7c6bad76eb54"'


def test_multiline_prompts_kept_and_whole_text_stripped():
    text = create_infotext("  line one\nline two", "neg one\nneg two  ", {"Steps": 1})
    assert text == "line one\nline two\nNegative prompt: neg one\nneg two  \nSteps: 1"
    assert create_infotext("prompt\n", "", {}) == "prompt"


@pytest.mark.parametrize(("value", "expected"), [
    ("Euler a", "Euler a"),
    (7, "7"),
    (7.0, "7.0"),
    (True, "True"),
    ('say "hi"', 'say "hi"'),
    ("5, 7, 9", '"5, 7, 9"'),
    ("name: 1234", '"name: 1234"'),
    ("two\nlines", '"two\\nlines"'),
    ('a, "b"', '"a, \\"b\\""'),
    ("猫, 犬", '"猫, 犬"'),
    ("日本語", "日本語"),
])
def test_quote(value, expected):
    assert quote(value) == expected
