"""Saving images: file-name patterns, numbering, atomic never-overwriting writes, metadata round trips, grids (§3.1, §5.2)."""
import datetime
import hashlib
import os
from types import SimpleNamespace

import pytest
from PIL import Image

from modules import images
from modules.images import (
    FilenameGenerator,
    get_next_sequence_number,
    image_grid,
    read_info_from_image,
    sanitize_filename_part,
    save_image,
    save_image_with_geninfo,
)

INFOTEXT = '猫の絵, "quoted", café\nNegative prompt: ぼやけ, blurry\nSteps: 20, Sampler: Euler a, X Values: "5, 7, 9"'


def make_opts(**overrides):
    values = dict(
        samples_format="png", samples_filename_pattern="", save_to_dirs=False, grid_save_to_dirs=True,
        directories_filename_pattern="[date]", directories_max_prompt_words=8, save_images_add_number=True,
        save_images_replace_action="Replace", enable_pnginfo=True, jpeg_quality=80, webp_lossless=False,
        export_for_4chan=False, target_side_length=4000, img_downscale_threshold=4.0, save_txt=False, grid_format="png",
        grid_extended_filename=False, grid_only_if_multiple=True, grid_prevent_empty_spots=False, n_rows=-1,
        grid_background_color="#ffffff",
    )
    values.update(overrides)
    return SimpleNamespace(**values)


def make_p(**overrides):
    values = dict(
        steps=20, cfg_scale=7.5, width=512, height=768, sampler_name="DPM++ 2M", scheduler="Karras", styles=["Style A", "Style B"],
        batch_size=2, batch_index=1, iteration=1, n_iter=3, all_seeds=[10, 11, 12, 13, 14, 15], sd_model_name="v1-5-pruned-emaonly",
        sd_model_hash="6ce0161689", sd_vae_name="vae-ft-mse-840000.safetensors", clip_skip=2, denoising_strength=0.75,
        job_timestamp="20240727120000", negative_prompt="blurry", user="alice",
    )
    values.update(overrides)
    return SimpleNamespace(**values)


PROMPT = 'a cat, "cute"/dog'
IMAGE = Image.new("RGB", (4, 4), (10, 20, 30))


def namegen(p=None, prompt=PROMPT, **kwargs):
    kwargs.setdefault("opts", make_opts())
    return FilenameGenerator(make_p() if p is None else p, 12, prompt, IMAGE, **kwargs)


# --- sanitising -------------------------------------------------------------------------------------------------------

def test_sanitize_replaces_every_invalid_character():
    assert sanitize_filename_part('a#b<c>d:e"f/g\\h|i?j*k\nl\rm\tn') == "a_b_c_d_e_f_g_h_i_j_k_l_m_n"


def test_sanitize_spaces_dots_and_length():
    assert sanitize_filename_part("  two words. . ") == "__two_words._._"  # spaces become "_" before stripping
    assert sanitize_filename_part("  two words. . ", replace_spaces=False) == "two words"
    assert sanitize_filename_part("x" * 300) == "x" * 128
    assert sanitize_filename_part("abcdef", max_length=3) == "abc"
    assert sanitize_filename_part(None) is None


def test_unix_sanitisation_only_replaces_slash():
    assert sanitize_filename_part('a:b/c"d', replace_spaces=False, unix=True) == 'a:b_c"d'


# --- file-name patterns -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("pattern", "expected"), [
    ("[seed]", "12"),
    ("[seed_first]-[seed_last]", "12-13"),
    ("[steps] [cfg] [width]x[height]", "20 7.5 512x768"),
    ("[sampler]|[scheduler]|[sampler_scheduler]", "DPM++ 2M|Karras|DPM++ 2M Karras"),
    ("[styles]", "Style A, Style B"),
    ("[model_hash] [model_name]", "6ce0161689 v1-5-pruned-emaonly"),
    ("[job_timestamp]", "20240727120000"),
    ("[prompt]", "a_cat,__cute__dog"),
    ("[prompt_spaces]", 'a cat, _cute__dog'),
    ("[prompt_words]", "a cat cute dog"),
    ("[prompt_hash]", hashlib.sha256(PROMPT.encode()).hexdigest()[:8]),
    ("[prompt_hash<12>]", hashlib.sha256(PROMPT.encode()).hexdigest()[:12]),
    ("[negative_prompt_hash]", hashlib.sha256(b"blurry").hexdigest()[:8]),
    ("[full_prompt_hash<4>]", hashlib.sha256(f"{PROMPT} blurry".encode()).hexdigest()[:4]),
    ("[hasprompt<cat><dog|nodog><bird|nobird><fish>]", "catdognobird"),
    ("[clip_skip] [denoising] [user]", "2 0.75 alice"),
    ("[vae_filename]", "vae-ft-mse-840000"),
    ("[image_hash]", hashlib.sha256(IMAGE.tobytes()).hexdigest()),
    ("[image_hash<6>]", hashlib.sha256(IMAGE.tobytes()).hexdigest()[:6]),
    ("[none]", ""),
    ("[SEED]-[Steps]", "12-20"),
])
def test_tokens(pattern, expected):
    assert namegen().apply(pattern) == expected


def test_batch_numbers_and_literal_slashes():
    # the literal "/" of a pattern is kept (the user's folder separator); only token values are sanitised
    assert namegen().apply("[batch_number]/[batch_size]/[generation_number]") == "2/2/4"


def test_basename_token():
    assert FilenameGenerator(None, 1, "p", None, basename="photo.src").apply("[basename]") == "photo.src"


def test_prompt_words_limit_and_empty_prompt():
    assert namegen(opts=make_opts(directories_max_prompt_words=2)).apply("[prompt_words]") == "a cat"
    assert namegen(prompt="").apply("[prompt_words]") == "empty"


def test_date_and_datetime_tokens():
    before = datetime.datetime.now()
    gen = namegen()
    date, default, year_utc, bad_zone = gen.apply("[date]|[datetime]|[datetime<%Y><UTC>]|[datetime<%H%M><No/Such_Zone>]").split("|")
    after = datetime.datetime.now()
    assert date in {before.strftime("%Y-%m-%d"), after.strftime("%Y-%m-%d")}
    assert default in {before.strftime("%Y%m%d%H%M%S"), after.strftime("%Y%m%d%H%M%S")}
    assert year_utc == str(datetime.datetime.now(datetime.UTC).year)
    assert bad_zone in {before.strftime("%H%M"), after.strftime("%H%M")}  # unknown zone: local time


def test_datetime_format_characters_are_sanitised():
    assert namegen().apply("[datetime<%H:%M>]") == datetime.datetime.now().strftime("%H_%M")


def test_missing_values_drop_the_separator_before_them():
    single = make_p(batch_size=1, batch_index=0, n_iter=1, iteration=0, all_seeds=[12])
    assert namegen(p=single).apply("[seed]-[batch_number]-[generation_number]-[seed_last]") == "12"
    no_model = make_p(sd_model_hash=None, denoising_strength=0)
    assert namegen(p=no_model).apply("[seed]-[model_hash]_[steps]-[denoising]") == "12_20"
    assert FilenameGenerator(None, 7, None, None).apply("[seed]-[steps]-[prompt]-[image_hash]-[basename]") == "7"


def test_missing_p_attributes_have_no_value():
    assert namegen(p=SimpleNamespace()).apply("[seed] [width]x[height] [sampler] [styles] [user]") == "12"


def test_zip_names_have_no_batch_numbers():
    assert namegen(zip=True).apply("[seed]-[batch_number]-[generation_number]") == "12"


def test_unknown_tokens_and_bad_arguments_are_left_literally():
    gen = namegen()
    assert gen.apply("[foo]-[seed]") == "[foo]-12"
    assert gen.apply("[seed<3>]") == "[seed<3>]"
    assert gen.apply("[prompt_hash<x>]") == "[prompt_hash<x>]"
    assert gen.apply("plain text") == "plain text"


def test_token_values_are_sanitised_and_cut():
    p = make_p(sampler_name="a/b:c", user="../../etc")
    assert namegen(p=p).apply("[sampler] [user]") == "a_b_c .._.._etc"
    assert namegen(prompt="x" * 300).apply("[prompt]") == "x" * 128
    assert namegen(prompt="x" * 300, max_length=20).apply("[prompt]") == "x" * 20
    assert namegen(prompt="a:b/c", unix=True).apply("[prompt_spaces]") == "a:b_c"


def test_styles_without_selection_and_automatic_scheduler():
    p = make_p(styles=[], scheduler="Automatic")
    assert namegen(p=p).apply("[styles] [sampler_scheduler]") == "None DPM++ 2M"


def test_prompt_no_styles_removes_style_text():
    wrapped = namegen(prompt="masterpiece, a cat, best quality", style_prompts=["masterpiece, {prompt}, best quality"])
    assert wrapped.apply("[prompt_no_styles]") == "a cat"
    appended = namegen(prompt="a cat, oil painting, dusk", style_prompts=["oil painting"])
    assert appended.apply("[prompt_no_styles]") == "a cat, dusk"


def test_vae_filename_with_leading_dot():
    assert namegen(p=make_p(sd_vae_name="/models/VAE/.hidden.vae.pt")).apply("[vae_filename]") == "hidden"


# --- numbering --------------------------------------------------------------------------------------------------------

def test_next_sequence_number(tmp_path):
    for name in ["00003-1.png", "00010-x.png", "notes.txt", "grid-0004.png", "00007.txt", ".hidden.tmp", "12abc.png"]:
        (tmp_path / name).write_bytes(b"")
    assert get_next_sequence_number(str(tmp_path), "") == 11
    assert get_next_sequence_number(str(tmp_path), "grid") == 5
    assert get_next_sequence_number(str(tmp_path / "absent"), "") == 0
    (tmp_path / "empty").mkdir()
    assert get_next_sequence_number(str(tmp_path / "empty"), "") == 0


def test_save_numbers_files_after_the_highest(tmp_path):
    opts = make_opts()
    (tmp_path / "00041-old.png").write_bytes(b"old")
    first, txt = save_image(IMAGE, str(tmp_path), "", seed=1, prompt="a cat", info="x", opts=opts)
    second, _ = save_image(IMAGE, str(tmp_path), "", seed=2, prompt="a cat", opts=opts)
    assert os.path.basename(first) == "00042-1-a cat.png"
    assert os.path.basename(second) == "00043-2-a cat.png"
    assert txt is None
    assert IMAGE.already_saved_as == second


def test_never_overwrites_a_file_created_after_the_scan(tmp_path, monkeypatch):
    taken = tmp_path / "00005-7.png"
    taken.write_bytes(b"someone else's image")
    monkeypatch.setattr(images, "get_next_sequence_number", lambda path, basename: 5)  # another writer raced us
    fullfn, _ = save_image(IMAGE, str(tmp_path), "", seed=7, opts=make_opts(samples_filename_pattern="[seed]"))
    assert os.path.basename(fullfn) == "00006-7.png"
    assert taken.read_bytes() == b"someone else's image"
    assert Image.open(fullfn).size == (4, 4)


def test_without_numbers_collisions_get_suffixes(tmp_path):
    opts = make_opts(save_images_add_number=False, samples_filename_pattern="[seed]", save_images_replace_action="Add number suffix")
    names = [os.path.basename(save_image(IMAGE, str(tmp_path), "", seed=7, opts=opts)[0]) for _ in range(3)]
    assert names == ["7.png", "7-1.png", "7-2.png"]


def test_without_numbers_replace_action_replaces(tmp_path):
    opts = make_opts(save_images_add_number=False, samples_filename_pattern="[seed]")
    (tmp_path / "7.png").write_bytes(b"old")
    fullfn, _ = save_image(IMAGE, str(tmp_path), "", seed=7, opts=opts)
    assert os.path.basename(fullfn) == "7.png"
    assert Image.open(fullfn).size == (4, 4)
    assert sorted(os.listdir(tmp_path)) == ["7.png"]


def test_empty_decoration_always_numbers(tmp_path):
    opts = make_opts(save_images_add_number=False)
    assert os.path.basename(save_image(IMAGE, str(tmp_path), "", seed=None, opts=opts)[0]) == "00000.png"


def test_grid_names_and_dirs(tmp_path):
    opts = make_opts(directories_filename_pattern="[model_name]")
    p = make_p()
    fullfn, _ = save_image(IMAGE, str(tmp_path), "grid", seed=10, prompt="a cat", short_filename=True, grid=True, p=p, opts=opts)
    assert os.path.relpath(fullfn, tmp_path) == os.path.join("v1-5-pruned-emaonly", "grid-0000.png")


def test_dated_folder_and_default_pattern_in_folders(tmp_path):
    today = datetime.date.today().strftime("%Y-%m-%d")
    fullfn, _ = save_image(IMAGE, str(tmp_path), "", seed=99, prompt="a cat", opts=make_opts(save_to_dirs=True))
    assert os.path.relpath(fullfn, tmp_path) == os.path.join(today, "00000-99.png")


def test_empty_folder_pattern_uses_prompt_words(tmp_path):
    opts = make_opts(save_to_dirs=True, directories_filename_pattern="", directories_max_prompt_words=2)
    fullfn, _ = save_image(IMAGE, str(tmp_path), "", seed=1, prompt="red fox, snow", opts=opts)
    assert os.path.relpath(fullfn, tmp_path) == os.path.join("red fox", "00000-1.png")


def test_no_prompt_disables_folders_and_explicit_save_to_dirs_wins(tmp_path):
    opts = make_opts(save_to_dirs=True, directories_filename_pattern="sub")
    no_dirs, _ = save_image(IMAGE, str(tmp_path), "", seed=1, no_prompt=True, opts=opts)
    forced, _ = save_image(IMAGE, str(tmp_path), "", seed=1, save_to_dirs=True, opts=make_opts(directories_filename_pattern="sub"))
    assert os.path.dirname(no_dirs) == str(tmp_path)
    assert os.path.dirname(forced) == str(tmp_path / "sub")


def test_pattern_from_override_settings_and_suffix(tmp_path):
    p = make_p(override_settings={"samples_filename_pattern": "[steps]"})
    fullfn, _ = save_image(IMAGE, str(tmp_path), "", seed=1, p=p, suffix="-mask", opts=make_opts(samples_filename_pattern="[seed]"))
    assert os.path.basename(fullfn) == "00000-20-mask.png"


def test_forced_filename(tmp_path):
    fullfn, _ = save_image(IMAGE, str(tmp_path), "", seed=1, forced_filename="chosen", extension="jpg", opts=make_opts())
    assert os.path.basename(fullfn) == "chosen.jpg"


def test_long_names_fit_the_file_system(tmp_path):
    prompt = "猫" * 300
    fullfn, _ = save_image(IMAGE, str(tmp_path), "", seed=1, prompt=prompt, opts=make_opts(samples_filename_pattern="[prompt_spaces]"))
    name = os.path.basename(fullfn)
    assert len(name.encode()) <= os.statvfs(tmp_path).f_namemax
    assert name.startswith("00000-猫") and name.endswith("猫.png")


# --- atomic writes ----------------------------------------------------------------------------------------------------

def test_atomic_save_leaves_no_temp_files(tmp_path):
    save_image(IMAGE, str(tmp_path), "", seed=1, info=INFOTEXT, opts=make_opts(save_txt=True))
    assert sorted(os.listdir(tmp_path)) == ["00000-1.png", "00000-1.txt"]


def test_failed_save_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="Cannot save images as .nosuchformat"):
        save_image(IMAGE, str(tmp_path), "", seed=1, extension="nosuchformat", opts=make_opts())
    assert os.listdir(tmp_path) == []


# --- metadata ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("extension", ["png", "jpg", "webp"])
def test_infotext_round_trip(tmp_path, extension):
    fullfn, _ = save_image(IMAGE, str(tmp_path), "", seed=1, extension=extension, info=INFOTEXT, opts=make_opts())
    assert fullfn.endswith(f".{extension}")
    with Image.open(fullfn) as saved:
        geninfo, items = read_info_from_image(saved)
    assert geninfo == INFOTEXT
    assert "parameters" not in items and "exif" not in items


def test_png_uses_text_chunks_and_keeps_existing_items(tmp_path):
    latin, _ = save_image(IMAGE, str(tmp_path), "", seed=1, info="plain, café", existing_info={"extras": "upscaled"}, opts=make_opts())
    cjk, _ = save_image(IMAGE, str(tmp_path), "", seed=2, info=INFOTEXT, opts=make_opts())
    with open(latin, "rb") as file:
        assert b"tEXtparameters\x00plain, caf\xe9" in file.read()
    with open(cjk, "rb") as file:
        assert b"iTXtparameters" in file.read()
    with Image.open(latin) as saved:
        assert read_info_from_image(saved) == ("plain, café", {"extras": "upscaled"})


def test_existing_parameters_kept_when_no_new_infotext(tmp_path):
    fullfn, _ = save_image(IMAGE, str(tmp_path), "", seed=1, existing_info={"parameters": "old text", "postprocessing": "x"},
                           opts=make_opts())
    with Image.open(fullfn) as saved:
        assert read_info_from_image(saved) == ("old text", {"postprocessing": "x"})


def test_jpeg_exif_is_unicode_user_comment(tmp_path):
    fullfn, _ = save_image(Image.new("RGBA", (4, 4)), str(tmp_path), "", seed=1, extension="jpg", info=INFOTEXT, opts=make_opts())
    with open(fullfn, "rb") as file:
        assert b"UNICODE\x00" + INFOTEXT.encode("utf-16-be") in file.read()


def test_enable_pnginfo_off_writes_no_metadata(tmp_path):
    opts = make_opts(enable_pnginfo=False, save_txt=True)
    for extension in ("png", "jpg", "webp"):
        fullfn, txt = save_image(IMAGE, str(tmp_path), "", seed=1, extension=extension, info=INFOTEXT, opts=opts)
        with Image.open(fullfn) as saved:
            assert read_info_from_image(saved)[0] is None
        assert txt is not None


def test_txt_sidecar(tmp_path):
    fullfn, txt = save_image(IMAGE, str(tmp_path), "", seed=1, info=INFOTEXT, opts=make_opts(save_txt=True))
    assert txt == os.path.splitext(fullfn)[0] + ".txt"
    with open(txt, encoding="utf8") as file:
        assert file.read() == INFOTEXT + "\n"


def test_save_image_with_geninfo_to_a_name_without_extension(tmp_path):
    target = str(tmp_path / "temporary")
    save_image_with_geninfo(IMAGE, INFOTEXT, target, "webp", opts=make_opts())
    with Image.open(target) as saved:
        assert saved.format == "WEBP"
        assert read_info_from_image(saved)[0] == INFOTEXT


def test_read_info_from_plain_and_gif_images(tmp_path):
    assert read_info_from_image(Image.new("RGB", (2, 2))) == (None, {})
    gif = str(tmp_path / "a.gif")
    save_image_with_geninfo(Image.new("P", (2, 2)), INFOTEXT, gif, opts=make_opts())
    with Image.open(gif) as saved:
        assert read_info_from_image(saved)[0] == INFOTEXT


def test_damaged_exif_reads_as_no_infotext():
    image = Image.new("RGB", (2, 2))
    image.info["exif"] = b"Exif\x00\x00garbage"
    assert read_info_from_image(image) == (None, {})


@pytest.mark.parametrize(("size", "extension"), [((16384, 1), "webp"), ((65536, 1), "jpg")])
def test_too_large_for_format_saves_png(tmp_path, size, extension):
    fullfn, _ = save_image(Image.new("L", size), str(tmp_path), "", seed=1, extension=extension, info="x", opts=make_opts())
    assert fullfn.endswith(".png")
    with Image.open(fullfn) as saved:
        assert saved.format == "PNG" and read_info_from_image(saved)[0] == "x"


def test_export_for_4chan_writes_a_downscaled_jpeg(tmp_path):
    opts = make_opts(export_for_4chan=True, target_side_length=16)
    fullfn, _ = save_image(Image.new("RGB", (40, 20)), str(tmp_path), "", seed=1, info=INFOTEXT, opts=opts)
    copy = os.path.splitext(fullfn)[0] + ".jpg"
    with Image.open(copy) as small:
        assert small.size == (16, 8)
        assert read_info_from_image(small)[0] == INFOTEXT
    save_image(Image.new("RGB", (10, 10)), str(tmp_path), "", seed=2, opts=opts)
    assert sorted(os.listdir(tmp_path)) == ["00000-1.jpg", "00000-1.png", "00001-2.png"]


# --- grids ------------------------------------------------------------------------------------------------------------

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]


def tiles(count, size=(2, 2)):
    return [Image.new("RGB", size, colour) for colour in COLOURS[:count]]


def test_grid_layout_square():
    grid = image_grid(tiles(4), opts=make_opts())
    assert grid.size == (4, 4)
    assert [grid.getpixel(xy) for xy in [(0, 0), (2, 0), (0, 2), (2, 2)]] == COLOURS[:4]


def test_grid_rows_from_settings():
    assert image_grid(tiles(6), opts=make_opts(n_rows=3)).size == (4, 6)
    assert image_grid(tiles(6), batch_size=6, opts=make_opts(n_rows=0)).size == (2, 12)
    assert image_grid(tiles(5), opts=make_opts()).size == (6, 4)
    assert image_grid(tiles(5), opts=make_opts(grid_prevent_empty_spots=True)).size == (10, 2)
    assert image_grid(tiles(3), rows=5, opts=make_opts()).size == (2, 6)


def test_grid_centres_smaller_images_on_the_background():
    grid = image_grid([Image.new("RGB", (4, 4), COLOURS[0]), Image.new("RGB", (2, 2), COLOURS[1])], rows=1, opts=make_opts())
    assert grid.size == (8, 4)
    assert grid.getpixel((5, 1)) == COLOURS[1]
    assert grid.getpixel((4, 0)) == (255, 255, 255)


def test_grid_needs_images():
    with pytest.raises(ValueError, match="at least one image"):
        image_grid([], opts=make_opts())


def test_live_settings_are_used_when_no_opts_given():
    # modules.shared_options.opts with A1111 defaults: n_rows -1 (square-ish), white grid background, 8 prompt words
    grid = image_grid([Image.new("RGB", (4, 4), COLOURS[0]), Image.new("RGB", (2, 2), COLOURS[1])])
    assert grid.size == (8, 4) and grid.getpixel((4, 0)) == (255, 255, 255)
    words = "one two three four five six seven eight nine ten"
    assert FilenameGenerator(None, 1, words, None).apply("[prompt_words]") == "one two three four five six seven eight"
