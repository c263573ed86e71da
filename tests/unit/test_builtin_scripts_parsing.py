"""Pure logic of the built-in scripts: X/Y/Z value lists and ranges, prompt-matrix combinations, prompts-file lines."""
import os

import pytest

from modules import paths_internal
from modules.scripts import load_module


def load(name):
    return load_module(os.path.join(paths_internal.script_path, "scripts", f"{name}.py"))


xyz = load("xyz_grid")
matrix = load("prompt_matrix")
from_file = load("prompts_from_file")


@pytest.mark.parametrize(("text", "kind", "expected"), [
    ("1, 2, 3", int, [1, 2, 3]),
    ("1-5", int, [1, 2, 3, 4, 5]),
    ("1-5 (+2)", int, [1, 3, 5]),
    ("1-10 (+3)", int, [1, 4, 7, 10]),
    ("10-1 (-3)", int, [10, 7, 4, 1]),
    ("5-1", int, [5, 4, 3, 2, 1]),
    ("1-10 [5]", int, [1, 3, 5, 7, 10]),
    ("0-100 [3]", int, [0, 50, 100]),
    ("-1, 5", int, [-1, 5]),
    ("-5--3", int, [-5, -4, -3]),
    ("1-3, 7, 9-10", int, [1, 2, 3, 7, 9, 10]),
    ("5-5", int, [5]),
    ("4-6 [1]", int, [4]),
    ("1-2 (+0.5)", float, [1.0, 1.5, 2.0]),
    ("0.1-0.5 (+0.1)", float, [0.1, 0.2, 0.3, 0.4, 0.5]),
    ("7-5 (-0.5)", float, [7.0, 6.5, 6.0, 5.5, 5.0]),
    ("0-1 [5]", float, [0.0, 0.25, 0.5, 0.75, 1.0]),
    ("5, 7.5, .5", float, [5.0, 7.5, 0.5]),
    ("3-5", float, [3.0, 4.0, 5.0]),
    ('cat, "dog, big", bird', str, ["cat", "dog, big", "bird"]),
    ("a-b, c", str, ["a-b", "c"]),
    ("1, 2,", int, [1, 2]),
    ("[1, 5, 9]", int, [1, 5, 9]),
    ("[1-3, 10]", int, [1, 2, 3, 10]),
    ('[cat, "dog, big"]', str, ["cat", "dog, big"]),
])
def test_value_lists_and_ranges(text, kind, expected):
    values = xyz.parse_values(xyz.split_values(text), kind)
    assert values == expected
    assert all(type(value) is kind for value in values)


@pytest.mark.parametrize(("text", "kind", "message"), [
    ("1, x", int, "'x' is not a whole number"),
    ("1.5", int, "'1.5' is not a whole number"),
    ("1-5 (-1)", int, "never reaches 5"),
    ("1-5 (0)", int, "never reaches 5"),
    ("abc", float, "'abc' is not a number"),
    ("1-2 [0]", int, "asks for no values"),
])
def test_bad_values_are_errors_naming_them(text, kind, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        xyz.parse_values(xyz.split_values(text), kind)


def test_join_values_round_trips_quoted_values():
    values = ["a", "b, c", 'say "hi"']
    assert xyz.split_values(xyz.join_values(values)) == values


def test_script_params_go_before_version():
    infotext = "a cat\nNegative prompt: ugly\nSteps: 2, Seed: 5, Version: v1"
    params = {"Script": "X/Y/Z plot", "X Type": "CFG Scale", "X Values": "5, 7, 9"}
    assert xyz.with_params(infotext, params) == ('a cat\nNegative prompt: ugly\nSteps: 2, Seed: 5, Script: X/Y/Z plot, '
                                                 'X Type: CFG Scale, X Values: "5, 7, 9", Version: v1')
    assert xyz.with_params("p\nSteps: 2, Seed: 5", {"Script": "X/Y/Z plot"}) == "p\nSteps: 2, Seed: 5, Script: X/Y/Z plot"


def test_axis_types_by_index_or_label_and_tab():
    txt2img, img2img = xyz.options_for(False), xyz.options_for(True)
    labels = [o.label for o in txt2img]
    for required in ["Nothing", "Seed", "Var. seed", "Var. strength", "Steps", "CFG Scale", "Prompt S/R", "Sampler",
                     "Schedule type", "Checkpoint name", "Clip skip", "Denoising", "Hires upscaler", "Size",
                     "Refiner checkpoint", "Refiner switch at", "VAE", "Styles"]:
        assert required in labels
    assert "Hires upscaler" not in [o.label for o in img2img]
    assert "Initial noise multiplier" in [o.label for o in img2img]
    assert xyz.find_option(txt2img, 1).label == "Seed"
    assert xyz.find_option(txt2img, "steps").label == "Steps"
    with pytest.raises(ValueError, match="Unknown X/Y/Z axis type: Colour"):
        xyz.find_option(txt2img, "Colour")
    with pytest.raises(ValueError, match="out of range"):
        xyz.find_option(txt2img, len(txt2img))


def test_size_values():
    assert xyz.parse_size("512x768") == (512, 768)
    assert xyz.parse_size(" 64 X 96 ") == (64, 96)
    for bad in ("512", "500x512", "0x64", "axb"):
        with pytest.raises(ValueError, match="multiples of 8"):
            xyz.parse_size(bad)


@pytest.mark.parametrize(("prompt", "at_start", "delimiter", "expected"), [
    ("a cat|red|big", False, ", ", ["a cat", "a cat, red", "a cat, big", "a cat, red, big"]),
    ("a cat|red|big", True, " ", ["a cat", "red a cat", "big a cat", "red big a cat"]),
    ("plain", False, ", ", ["plain"]),
    ("base| hat, | scarf", False, ", ", ["base", "base, hat", "base, scarf", "base, hat, scarf"]),
])
def test_prompt_matrix_combinations(prompt, at_start, delimiter, expected):
    assert matrix.matrix_prompts(prompt, at_start, delimiter) == expected


def test_prompts_file_lines():
    assert from_file.parse_line("a plain prompt, with commas") == {"prompt": "a plain prompt, with commas"}
    parsed = from_file.parse_line('--prompt "a dog" in snow --steps 10 --seed -1 --cfg_scale 6.5 --sampler_name k_euler_a '
                                  '--styles "one, two" --tiling true --negative_prompt blurry ugly')
    assert parsed == {"prompt": "a dog in snow", "steps": 10, "seed": -1, "cfg_scale": 6.5, "sampler_name": "Euler a",
                      "styles": ["one", "two"], "tiling": True, "negative_prompt": "blurry ugly"}
    assert from_file.parse_line("--sampler_index 0 --width 64 --height 96") == {"sampler_name": "DPM++ 2M", "width": 64,
                                                                                 "height": 96}


@pytest.mark.parametrize(("line", "message"), [
    ("--prompt cat --colour red", "Unknown option --colour"),
    ("--steps ten", "Option --steps in line '--steps ten': invalid literal"),
    ("--steps", "Option --steps has no value"),
    ("--prompt a --steps --seed 1", "Option --steps has no value"),
    ("--sampler_name Foo", "unknown sampler 'Foo'"),
    ("--tiling maybe", "'maybe' is not true or false"),
    ('--prompt "unclosed', "Cannot read line"),
    ("--steps 5 stray", "Expected an --option but found 'stray'"),
])
def test_prompts_file_errors_name_the_problem(line, message):
    with pytest.raises(ValueError, match=message):
        from_file.parse_line(line)


def test_prompts_file_prompt_position():
    assert from_file.combine_prompts("ui prompt", "line", "start") == "line ui prompt"
    assert from_file.combine_prompts("ui prompt", "line", "end") == "ui prompt line"
    assert from_file.combine_prompts("ui prompt", "line", "replace") == "line"
    assert from_file.combine_prompts("", "line", "end") == "line"
