"""The built-in scripts: X/Y/Z plot, Prompt matrix, Prompts from file or textbox, run as the Script dropdown runs them
(run(p, *args)). On the tiny SD1 checkpoint every cell, matrix image and file line must equal the same job run alone,
pixel for pixel; the bookkeeping (seeds, order, layout, infotexts, saving) is checked over a stand-in engine that
paints each job in a colour of its own."""
import os
import shutil
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from modules import images, infotext_utils, paths_internal, processing, scripts as scripts_module
from modules.shared_options import opts
from modules.shared_state import state
from tests.integration.engine_helpers import pixels, start_engine, txt2img

CELL = 64


def load(name):
    """A built-in script file, imported the way the script loader imports it."""
    return scripts_module.load_module(os.path.join(paths_internal.script_path, "scripts", f"{name}.py"))


xyz = load("xyz_grid")
prompt_matrix = load("prompt_matrix")
prompts_from_file = load("prompts_from_file")


def make_p(**kwargs):
    values = {"prompt": "a red cube", "negative_prompt": "blurry", "steps": 1, "width": CELL, "height": CELL, "seed": 1234,
              "sampler_name": "Euler", "cfg_scale": 7.0, "do_not_save_samples": True, "do_not_save_grid": True}
    return processing.StableDiffusionProcessingTxt2Img(**{**values, **kwargs})


def run_xyz(p, x_type="Seed", x_values="", y_type="Nothing", y_values="", z_type="Nothing", z_values="", *,
            draw_legend=True, include_lone_images=False, include_sub_grids=False, no_fixed_seeds=False,
            vary=(False, False, False), margin=0):
    """X/Y/Z plot's run() with its arguments in ui() order, values typed as text."""
    return xyz.Script().run(p, x_type, x_values, [], y_type, y_values, [], z_type, z_values, [], draw_legend,
                            include_lone_images, include_sub_grids, no_fixed_seeds, *vary, margin, True)


def legend_bands(cell_w=CELL, cell_h=CELL, *, rows_labelled=True):
    """(left band width, top band height) of a one-line legend over cells of this size, from the grid's own font."""
    size = max((cell_w + cell_h) // 25, 10)
    ascent, descent = images.grid_font("", size).getmetrics()
    return (cell_w * 3 // 4 if rows_labelled else 0), ascent + descent + 2 * (size // 2)


def cell_box(col, row, left, top, cell_w=CELL, cell_h=CELL, margin=0):
    x, y = left + col * (cell_w + margin), top + row * (cell_h + margin)
    return x, y, x + cell_w, y + cell_h


SD1 = "tiny_sd1"
SD1_COPY = "tiny_sd1_copy"


@pytest.fixture(scope="module")
def engine(tmp_path_factory, sd1_ckpt):
    """models/ with the tiny SD1 checkpoint under two names (for the Checkpoint axis); one manager for the module."""
    root = tmp_path_factory.mktemp("models-scripts")
    (root / "Stable-diffusion").mkdir()
    shutil.copyfile(sd1_ckpt.path, root / "Stable-diffusion" / f"{SD1}.safetensors")
    shutil.copyfile(sd1_ckpt.path, root / "Stable-diffusion" / f"{SD1_COPY}.safetensors")
    manager = start_engine(root, tmp_path_factory.mktemp("data-scripts"))
    opts.set("sd_model_checkpoint", SD1)
    opts.set("grid_save", False)
    return manager


def alone(**kwargs):
    return txt2img(SD1, **{"steps": 1, "seed": 1234, **kwargs}).images[0]


def test_xyz_two_seeds_by_two_step_counts_equals_each_job_alone(engine):
    result = run_xyz(make_p(), "Seed", "11, 22", "Steps", "1, 2", include_lone_images=True)
    left, top = legend_bands()
    grid = result.images[0]
    assert grid.size == (left + 2 * CELL, top + 2 * CELL)
    assert result.index_of_first_image == 1
    assert len(result.images) == 5 and len(result.infotexts) == 5
    assert pixels(grid.crop((left, 0, grid.width, top))).min() < 100, "column labels drawn"
    assert pixels(grid.crop((0, top, left, grid.height))).min() < 100, "row labels drawn"

    for iy, steps in enumerate((1, 2)):
        for ix, seed in enumerate((11, 22)):
            reference = pixels(alone(steps=steps, seed=seed))
            assert np.array_equal(pixels(grid.crop(cell_box(ix, iy, left, top))), reference), (seed, steps)
            index = 1 + ix + iy * 2
            assert np.array_equal(pixels(result.images[index]), reference)
            params = infotext_utils.parse_generation_parameters(result.infotexts[index])
            assert (params["Seed"], params["Steps"]) == (str(seed), str(steps))
            assert "Script" not in params, "a cell's infotext is the job's own"
    assert result.all_seeds == [11, 22, 11, 22]

    grid_params = infotext_utils.parse_generation_parameters(result.infotexts[0])
    assert grid_params["Script"] == "X/Y/Z plot"
    assert (grid_params["X Type"], grid_params["X Values"], grid_params["Fixed X Values"]) == ("Seed", "11, 22", "11, 22")
    assert (grid_params["Y Type"], grid_params["Y Values"]) == ("Steps", "1, 2")
    assert "Z Type" not in grid_params and "Fixed Y Values" not in grid_params
    assert result.infotexts[0].endswith(f"Version: {processing.VERSION}")


def test_xyz_checkpoint_and_clip_skip_go_through_settings_and_are_restored(engine):
    result = run_xyz(make_p(), "Checkpoint name", f"{SD1}, {SD1_COPY}", "Clip skip", "2", include_lone_images=True)
    cells = [infotext_utils.parse_generation_parameters(t) for t in result.infotexts[1:]]
    assert [(c["Model"], c["Clip skip"]) for c in cells] == [(SD1, "2"), (SD1_COPY, "2")]
    assert np.array_equal(pixels(result.images[1]), pixels(alone(override_settings={"CLIP_stop_at_last_layers": 2})))
    assert opts.CLIP_stop_at_last_layers == 1
    assert opts.sd_model_checkpoint == SD1


def test_xyz_prompt_search_replace_and_size(engine):
    p = make_p(prompt="a red cube", negative_prompt="red blur")
    result = run_xyz(p, "Prompt S/R", "red, blue", "Size", "64x96", include_lone_images=True)
    assert [infotext_utils.parse_generation_parameters(t)["Prompt"] for t in result.infotexts[1:]] == ["a red cube",
                                                                                                       "a blue cube"]
    assert "Negative prompt: blue blur" in result.infotexts[2]
    assert [im.size for im in result.images[1:]] == [(64, 96), (64, 96)]
    reference = alone(prompt="a blue cube", negative_prompt="blue blur", width=64, height=96)
    assert np.array_equal(pixels(result.images[2]), pixels(reference))


def test_prompt_matrix_two_parts_gives_four_images_and_a_labelled_grid(engine):
    result = prompt_matrix.Script().run(make_p(prompt="a cube|red|shiny"), False, False, "positive", "comma", 0)
    assert result.index_of_first_image == 1 and len(result.images) == 5
    assert result.all_prompts == ["a cube", "a cube, red", "a cube, shiny", "a cube, red, shiny"]
    assert [infotext_utils.parse_generation_parameters(t)["Prompt"] for t in result.infotexts[1:]] == result.all_prompts
    assert result.all_seeds == [1234] * 4
    left, top = legend_bands()
    grid = result.images[0]
    assert grid.size == (left + 2 * CELL, top + 2 * CELL)
    for index, image in enumerate(result.images[1:]):
        assert np.array_equal(pixels(grid.crop(cell_box(index % 2, index // 2, left, top))), pixels(image))
    assert np.array_equal(pixels(result.images[4]), pixels(alone(prompt="a cube, red, shiny")))
    assert not np.array_equal(pixels(result.images[1]), pixels(result.images[4]))


def test_prompts_from_file_two_lines_with_flags(engine):
    text = '--prompt "a green ball" --steps 2 --seed 5\n\nplain blue sky\n'
    result = prompts_from_file.Script().run(make_p(prompt="", steps=1, seed=77), False, False, "start", text)
    assert len(result.images) == 2 and result.index_of_first_image == 0
    first, second = (infotext_utils.parse_generation_parameters(t) for t in result.infotexts)
    assert (first["Prompt"], first["Steps"], first["Seed"]) == ("a green ball", "2", "5")
    assert (second["Prompt"], second["Steps"], second["Seed"]) == ("plain blue sky", "1", "77")
    assert np.array_equal(pixels(result.images[0]), pixels(alone(prompt="a green ball", steps=2, seed=5)))
    assert result.all_seeds == [5, 77]


@pytest.mark.parametrize("module", [xyz, prompt_matrix, prompts_from_file])
@pytest.mark.parametrize("is_img2img", [False, True])
def test_ui_builds_inside_blocks(module, is_img2img):
    script = module.Script()
    script.is_img2img = is_img2img
    with gr.Blocks():
        controls = script.ui(is_img2img)
    assert controls and all(isinstance(c, gr.components.Component) for c in controls)
    assert len(controls) == script.run.__code__.co_argcount - 2, "run(self, p, ...) takes exactly the ui() values"


def test_the_script_loader_lists_the_built_in_scripts():
    scripts_module.load_scripts()
    for is_img2img in (False, True):
        runner = scripts_module.ScriptRunner()
        runner.initialize_scripts(is_img2img=is_img2img)
        assert {"X/Y/Z plot", "Prompt matrix", "Prompts from file or textbox"} <= set(runner.titles)


# ---- bookkeeping over a stand-in engine -------------------------------------------------------------------------------

class StandIn:
    """process_images stand-in: records each job (and the seed it was given) and paints it a colour made of its seed,
    steps and CFG scale."""

    def __init__(self):
        self.jobs, self.given_seeds = [], []
        self.after_each = None
        self.produce_images = True

    def __call__(self, p):
        self.given_seeds.append(p.seed)
        p.seed = processing.get_fixed_seed(p.seed)
        p.all_prompts, p.all_negative_prompts = [p.prompt] * p.n_iter, [p.negative_prompt] * p.n_iter
        p.all_seeds, p.all_subseeds = [p.seed + i for i in range(p.n_iter)], [p.subseed] * p.n_iter
        self.jobs.append(p)
        colour = (p.seed * 50 % 256, p.steps * 40 % 256, int(p.cfg_scale * 20) % 256)
        infotext = infotext_utils.create_infotext(p.prompt, p.negative_prompt, {
            "Steps": p.steps, "CFG scale": p.cfg_scale, "Seed": p.seed, "Size": f"{p.width}x{p.height}", "Version": "test"})
        if self.after_each:
            self.after_each(self)
        if not self.produce_images:
            return SimpleNamespace(images=[], infotexts=[], index_of_first_image=0)
        return SimpleNamespace(images=[Image.new("RGB", (p.width, p.height), colour)], infotexts=[infotext],
                               index_of_first_image=0)


@pytest.fixture()
def stand_in(monkeypatch):
    engine = StandIn()
    monkeypatch.setattr(processing, "process_images", engine)
    yield engine
    state.interrupted = False


@pytest.fixture()
def saved_opts():
    saved = dict(opts.data)
    yield opts
    opts.data.clear()
    opts.data.update(saved)


def test_xyz_bad_values_fail_before_any_image(stand_in):
    cases = [
        (("Sampler", "Euler, Nonsense"), "Sampler not found: Nonsense"),
        (("Checkpoint name", "no_such_model"), "Unknown checkpoint: no_such_model"),
        (("Steps", "1, many"), "X values for Steps: 'many' is not a whole number"),
        (("Steps", "1-3 (-1)"), "X values for Steps: the range 1-3 never reaches 3"),
        (("Prompt S/R", "green, blue"), "Prompt S/R did not find 'green'"),
        (("Schedule type", "Karras, Wobbly"), "Unknown schedule type: Wobbly"),
        (("VAE", "no_such_vae"), "Unknown VAE: no_such_vae"),
        (("Size", "64x64, 65x64"), "Size '65x64' must be WIDTHxHEIGHT"),
        (("Hires upscaler", "Latent, Imaginary"), "Upscaler not found: Imaginary"),
        (("Refiner checkpoint", "None, nothing_here"), "Unknown checkpoint: nothing_here"),
        (("RNG source", "CPU, Dice"), "Unknown value: Dice"),
        (("Seed", ""), "X values for Seed are empty"),
        (("Colour", "red"), "Unknown X/Y/Z axis type: Colour"),
    ]
    for (kind, values), message in cases:
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            run_xyz(make_p(), kind, values)
    with pytest.raises(ValueError, match="Y values for CFG Scale: 'high' is not a number"):
        run_xyz(make_p(), "Steps", "1", "CFG Scale", "high")
    assert stand_in.jobs == [], "nothing may be generated before every value is checked"


def test_xyz_grid_too_large_is_refused_before_any_image(stand_in, saved_opts):
    opts.set("img_max_size_mp", 0.01)
    with pytest.raises(ValueError, match="too large"):
        run_xyz(make_p(), "Steps", "1, 2, 3")
    assert stand_in.jobs == []


def test_xyz_random_seed_is_fixed_once_for_every_cell(stand_in):
    result = run_xyz(make_p(seed=-1), "Steps", "1, 2", "CFG Scale", "3, 9")
    assert len(set(stand_in.given_seeds)) == 1 and stand_in.given_seeds[0] != -1
    assert result.all_seeds == stand_in.given_seeds
    assert len(result.images) == 1 and result.index_of_first_image == 1

    stand_in.given_seeds.clear()
    seeded = run_xyz(make_p(), "Seed", "-1, 5")
    params = infotext_utils.parse_generation_parameters(seeded.infotexts[0])
    fixed = [int(v) for v in params["Fixed X Values"].split(", ")]
    assert fixed[1] == 5 and fixed[0] != -1 and stand_in.given_seeds == fixed
    assert params["X Values"] == "-1, 5"


def test_xyz_keep_minus_one_leaves_each_cell_random(stand_in):
    result = run_xyz(make_p(seed=-1), "Steps", "1, 2", "Seed", "-1", no_fixed_seeds=True)
    assert stand_in.given_seeds == [-1, -1]
    assert "Fixed" not in result.infotexts[0]


def test_xyz_vary_seeds_offsets_each_cell(stand_in):
    result = run_xyz(make_p(seed=100), "Steps", "1, 2", "CFG Scale", "5, 6", vary=(True, True, False))
    assert result.all_seeds == [100, 101, 102, 103]
    stand_in.given_seeds.clear()
    run_xyz(make_p(seed=100), "Steps", "1, 2", "CFG Scale", "5, 6", vary=(False, True, False))
    assert stand_in.given_seeds == [100, 100, 102, 102]


def test_xyz_costly_axis_is_iterated_outermost(stand_in):
    run_xyz(make_p(), "VAE", "Automatic, None", "Steps", "1, 2")
    assert [(j.override_settings["sd_vae"], j.steps) for j in stand_in.jobs] == [
        ("Automatic", 1), ("Automatic", 2), ("None", 1), ("None", 2)]
    stand_in.jobs.clear()
    run_xyz(make_p(), "Steps", "1, 2", "CFG Scale", "5, 6")
    assert [(j.steps, j.cfg_scale) for j in stand_in.jobs] == [(1, 5.0), (2, 5.0), (1, 6.0), (2, 6.0)]


def test_xyz_cells_do_not_share_edits(stand_in):
    p = make_p(styles=["base"], override_settings={"eta_noise_seed_delta": 0})
    run_xyz(p, "Styles", "one, two", "Clip skip", "1, 2")
    assert [j.styles for j in stand_in.jobs] == [["base", "one"], ["base", "two"]] * 2
    assert [j.override_settings["CLIP_stop_at_last_layers"] for j in stand_in.jobs] == [1, 1, 2, 2]
    assert p.styles == ["base"] and p.override_settings == {"eta_noise_seed_delta": 0}


def test_xyz_z_axis_makes_a_grid_per_value_and_a_combined_one(stand_in):
    result = run_xyz(make_p(), "Seed", "1, 2", "Nothing", "", "CFG Scale", "4, 8", include_sub_grids=True,
                     include_lone_images=True)
    assert result.index_of_first_image == 3 and len(result.images) == 3 + 4 and len(result.infotexts) == 7
    cells = result.images[3:]
    _, top = legend_bands(rows_labelled=False)
    sub_w, sub_h = 2 * CELL, top + CELL
    for iz, sub in enumerate(result.images[1:3]):
        assert sub.size == (sub_w, sub_h)
        for ix in range(2):
            assert np.array_equal(pixels(sub.crop(cell_box(ix, 0, 0, top))), pixels(cells[iz * 2 + ix]))
    _, z_top = legend_bands(sub_w, sub_h, rows_labelled=False)
    combined = result.images[0]
    assert combined.size == (2 * sub_w, z_top + sub_h), "Z labels above the sub-grids side by side"
    for iz in range(2):
        box = (iz * sub_w, z_top, (iz + 1) * sub_w, z_top + sub_h)
        assert np.array_equal(pixels(combined.crop(box)), pixels(result.images[1 + iz]))
    main, sub_info = (infotext_utils.parse_generation_parameters(result.infotexts[i]) for i in (0, 2))
    assert (main["Z Type"], main["Z Values"], main["X Type"]) == ("CFG Scale", "4, 8", "Seed")
    assert "Z Type" not in sub_info and sub_info["X Type"] == "Seed" and sub_info["CFG scale"] == "8.0"
    assert [infotext_utils.parse_generation_parameters(t)["CFG scale"] for t in result.infotexts[3:]] == \
        ["4.0", "4.0", "8.0", "8.0"]

    plain = run_xyz(make_p(), "Seed", "1, 2", "Nothing", "", "CFG Scale", "4, 8")
    assert len(plain.images) == 1 and np.array_equal(pixels(plain.images[0]), pixels(combined.crop((0, 0) + combined.size)))


def test_xyz_mixed_sizes_and_margins(stand_in):
    result = run_xyz(make_p(), "Size", "64x64, 64x96", margin=4)
    _, top = legend_bands(64, 96, rows_labelled=False)
    grid = result.images[0]
    assert grid.size == (2 * 64 + 4, top + 96), "cells as large as the largest image, 4 px apart"
    assert (pixels(grid.crop((64, top, 68, top + 96))) == 255).all(), "the margin is background"
    small = pixels(grid.crop((0, top + 16, 64, top + 80)))
    assert (small == small[0, 0]).all() and (small[0, 0] != 255).any(), "the smaller image is centred in its cell"

    bare = run_xyz(make_p(), "Steps", "1, 2", draw_legend=False, margin=6)
    assert bare.images[0].size == (2 * CELL + 6, CELL), "no legend: only the margins"


def test_xyz_interrupted_grid_keeps_the_finished_cells(stand_in):
    def interrupt_after_two(engine):
        state.interrupted = len(engine.jobs) >= 2

    stand_in.after_each = interrupt_after_two
    result = run_xyz(make_p(), "Steps", "1, 2", "CFG Scale", "5, 6", include_lone_images=True)
    assert len(stand_in.jobs) == 2
    assert len(result.images) == 1 + 2 and result.all_seeds == [1234, 1234]
    left, top = legend_bands()
    black = pixels(result.images[0].crop(cell_box(1, 1, left, top)))
    assert (black == 0).all(), "an unfinished cell stays black"


def test_xyz_interrupted_before_any_image_returns_no_images(stand_in):
    def interrupt(engine):
        state.interrupted = True

    stand_in.after_each, stand_in.produce_images = interrupt, False
    result = run_xyz(make_p(), "Steps", "1, 2")
    assert len(stand_in.jobs) == 1 and result.images == []


def test_xyz_saves_grid_when_grid_save(stand_in, saved_opts, tmp_path):
    opts.set("grid_save", True)
    opts.set("grid_save_to_dirs", False)
    run_xyz(make_p(do_not_save_grid=True, outpath_grids=str(tmp_path / "quiet")), "Steps", "1, 2")
    assert not (tmp_path / "quiet").exists(), "do_not_save_grid (API save_images=false) saves nothing"
    run_xyz(make_p(do_not_save_grid=False, outpath_grids=str(tmp_path)), "Steps", "1, 2")
    saved = os.listdir(tmp_path)
    assert len(saved) == 1 and saved[0].startswith("xyz_grid-") and saved[0].endswith(".png")
    with Image.open(tmp_path / saved[0]) as grid:
        text, _ = images.read_info_from_image(grid)
    assert "Script: X/Y/Z plot, X Type: Steps" in text


def test_prompt_matrix_negative_prompt_different_seeds_variable_parts_first(stand_in):
    p = make_p(prompt="a cube", negative_prompt="blurry|dark|grainy")
    result = prompt_matrix.Script().run(p, True, True, "negative", "space", 0)
    assert result.all_negative_prompts == ["blurry", "dark blurry", "grainy blurry", "dark grainy blurry"]
    assert result.all_prompts == ["a cube"] * 4
    assert result.all_seeds == [1234, 1235, 1236, 1237]
    assert [j.batch_size for j in stand_in.jobs] == [1] * 4
    with pytest.raises(ValueError, match="Unknown prompt type sideways"):
        prompt_matrix.Script().run(make_p(), False, False, "sideways", "comma", 0)


def test_prompts_from_file_seed_options_and_prompt_position(stand_in):
    lines = "one\n--prompt two --n_iter 2\nthree"
    iterated = prompts_from_file.Script().run(make_p(prompt="ui", seed=40), True, False, "end", lines)
    assert stand_in.given_seeds == [40, 41, 43], "each line starts after the previous line's last seed"
    assert iterated.all_prompts == ["ui one", "ui two", "ui two", "ui three"]
    stand_in.given_seeds.clear()
    prompts_from_file.Script().run(make_p(prompt="ui", seed=-1), False, True, "replace", lines)
    assert len(set(stand_in.given_seeds)) == 1 and stand_in.given_seeds[0] != -1
    assert [j.prompt for j in stand_in.jobs[-3:]] == ["one", "two", "three"]
    stand_in.given_seeds.clear()
    prompts_from_file.Script().run(make_p(prompt="ui", seed=-1), False, False, "start", lines)
    assert stand_in.given_seeds == [-1, -1, -1], "without either option every line draws its own seed"
    assert [j.prompt for j in stand_in.jobs[-3:]] == ["one ui", "two ui", "three ui"]


def test_prompts_from_file_unknown_flag_is_an_error_before_any_image(stand_in):
    with pytest.raises(ValueError, match="Unknown option --colour in line: --prompt x --colour red"):
        prompts_from_file.Script().run(make_p(), False, False, "start", "first line\n--prompt x --colour red")
    with pytest.raises(ValueError, match="no prompts given"):
        prompts_from_file.Script().run(make_p(), False, False, "start", "  \n ")
    assert stand_in.jobs == []


def test_xyz_dropdown_values_and_typed_values_for_a_choice_axis(stand_in):
    sampler = [o.label for o in xyz.options_for(False)].index("Sampler")
    args = ["Nothing", "", [], "Nothing", "", [], True, False, False, False, False, False, False, 0, False]
    from_dropdown = xyz.Script().run(make_p(), sampler, "", ["Euler", "Euler a"], *args)
    assert [j.sampler_name for j in stand_in.jobs] == ["Euler", "Euler a"]
    assert infotext_utils.parse_generation_parameters(from_dropdown.infotexts[0])["X Values"] == "Euler,Euler a"
    stand_in.jobs.clear()
    xyz.Script().run(make_p(), "Sampler", "DDIM, LMS", [], *args)
    assert [j.sampler_name for j in stand_in.jobs] == ["DDIM", "LMS"], "typed values when the dropdown is empty (API)"
