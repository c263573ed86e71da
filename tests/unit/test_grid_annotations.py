"""Grid legends: draw_grid_annotations / draw_prompt_matrix sizes, cell placement, margins, wrapping, inactive labels."""
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from modules import images
from modules.images import (
    GridAnnotation,
    draw_grid_annotations,
    draw_prompt_matrix,
    image_grid,
)

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40)]
CELL = 64


def make_opts(**overrides):
    values = {"font": "", "grid_background_color": "#ffffff", "grid_text_active_color": "#000000",
              "grid_text_inactive_color": "#999999", "n_rows": -1, "grid_prevent_empty_spots": False}
    return SimpleNamespace(**{**values, **overrides})


def cells(count=4, size=CELL):
    return [Image.new("RGB", (size, size), COLOURS[i % len(COLOURS)]) for i in range(count)]


def labels(*texts):
    return [[GridAnnotation(text)] for text in texts]


def metrics(cell_w=CELL, cell_h=CELL):
    """Font size, line spacing and line height the legend uses for cells of this size."""
    size = max((cell_w + cell_h) // 25, 10)
    ascent, descent = images.grid_font("", size).getmetrics()
    return size, size // 2, ascent + descent


def pixels(image):
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_two_by_two_legend_has_exact_size_and_cells_in_place():
    opts = make_opts()
    grid = image_grid(cells(), rows=2, opts=opts)
    result = draw_grid_annotations(grid, CELL, CELL, labels("Seed: 1", "Seed: 2"), labels("Steps: 2", "Steps: 3"), opts=opts)
    _, spacing, line_height = metrics()
    pad_left, pad_top = CELL * 3 // 4, line_height + 2 * spacing
    assert result.size == (pad_left + 2 * CELL, pad_top + 2 * CELL)
    for index in range(4):
        col, row = index % 2, index // 2
        box = (pad_left + col * CELL, pad_top + row * CELL, pad_left + (col + 1) * CELL, pad_top + (row + 1) * CELL)
        assert np.array_equal(pixels(result.crop(box)), pixels(cells()[index]))
    top_band = pixels(result.crop((pad_left, 0, result.width, pad_top)))
    left_band = pixels(result.crop((0, pad_top, pad_left, result.height)))
    assert top_band.min() < 100 and left_band.min() < 100, "labels must be drawn in dark text"
    assert pixels(result.crop((0, 0, pad_left, pad_top))).min() == 255, "the corner stays blank"


def test_margin_separates_cells_with_background():
    opts = make_opts()
    grid = image_grid(cells(), rows=2, opts=opts)
    result = draw_grid_annotations(grid, CELL, CELL, labels("a", "b"), labels("c", "d"), margin=6, opts=opts)
    _, spacing, line_height = metrics()
    pad_left, pad_top = CELL * 3 // 4, line_height + 2 * spacing
    assert result.size == (pad_left + 2 * CELL + 6, pad_top + 2 * CELL + 6)
    second = result.crop((pad_left + CELL + 6, pad_top + CELL + 6, pad_left + 2 * CELL + 6, pad_top + 2 * CELL + 6))
    assert np.array_equal(pixels(second), pixels(cells()[3]))
    gap = pixels(result.crop((pad_left + CELL, pad_top, pad_left + CELL + 6, result.height)))
    assert (gap == 255).all()


def test_empty_labels_add_no_bands():
    opts = make_opts()
    grid = image_grid(cells(2), rows=1, opts=opts)
    result = draw_grid_annotations(grid, CELL, CELL, labels("", ""), labels(""), opts=opts)
    assert np.array_equal(pixels(result), pixels(grid))


def test_only_column_labels_give_no_left_band():
    opts = make_opts()
    grid = image_grid(cells(2), rows=1, opts=opts)
    result = draw_grid_annotations(grid, CELL, CELL, labels("x1", "x2"), labels(""), opts=opts)
    _, spacing, line_height = metrics()
    assert result.size == (2 * CELL, line_height + 2 * spacing + CELL)


def test_long_label_wraps_to_the_cell_width():
    opts = make_opts()
    grid = image_grid(cells(2), rows=1, opts=opts)
    text = "a very long label that cannot fit in one cell"
    result = draw_grid_annotations(grid, CELL, CELL, labels(text, "b"), labels(""), opts=opts)
    size, spacing, line_height = metrics()
    font = images.grid_font("", size)
    lines = images._wrap(font, text, CELL)
    assert len(lines) > 2 and all(font.getlength(line) <= CELL for line in lines if " " in line)
    assert " ".join(lines) == text
    assert result.height == CELL + len(lines) * line_height + (len(lines) - 1) * spacing + 2 * spacing


def test_wrong_grid_size_is_an_error():
    grid = image_grid(cells(4), rows=2, opts=make_opts())
    with pytest.raises(ValueError, match="3x2 cells of 64x64 must be 192x128, not 128x128"):
        draw_grid_annotations(grid, CELL, CELL, labels("a", "b", "c"), labels("d", "e"), opts=make_opts())


def test_unreadable_font_setting_falls_back_to_builtin(tmp_path):
    bad = tmp_path / "not-a-font.ttf"
    bad.write_bytes(b"nope")
    grid = image_grid(cells(2), rows=1, opts=make_opts())
    with_bad = draw_grid_annotations(grid, CELL, CELL, labels("a", "b"), labels(""), opts=make_opts(font=str(bad)))
    builtin = draw_grid_annotations(grid, CELL, CELL, labels("a", "b"), labels(""), opts=make_opts())
    assert np.array_equal(pixels(with_bad), pixels(builtin))


def test_prompt_matrix_marks_parts_active_by_combination_bits():
    opts = make_opts()
    grid = image_grid(cells(4), rows=2, opts=opts)
    result = draw_prompt_matrix(grid, CELL, CELL, ["base", "A", "B"], opts=opts)
    _, spacing, line_height = metrics()
    pad_left, pad_top = CELL * 3 // 4, line_height + 2 * spacing
    assert result.size == (pad_left + 2 * CELL, pad_top + 2 * CELL)

    def darkest(box):
        return pixels(result.crop(box)).min()

    inactive, active = 0x99, 0
    # column 0 lacks part A (grey, struck through), column 1 has it (black); rows likewise for part B
    assert darkest((pad_left, 0, pad_left + CELL, pad_top)) >= inactive - 1
    assert darkest((pad_left + CELL, 0, pad_left + 2 * CELL, pad_top)) <= active + 40
    assert darkest((0, pad_top, pad_left, pad_top + CELL)) >= inactive - 1
    assert darkest((0, pad_top + CELL, pad_left, pad_top + 2 * CELL)) <= active + 40


def test_prompt_matrix_three_parts_puts_two_on_columns():
    opts = make_opts()
    grid = image_grid(cells(8), rows=2, opts=opts)
    result = draw_prompt_matrix(grid, CELL, CELL, ["base", "A", "B", "C"], opts=opts)
    _, spacing, line_height = metrics()
    # columns carry A and B (two lines each), rows carry C
    assert result.size == (CELL * 3 // 4 + 4 * CELL, 2 * line_height + spacing + 2 * spacing + 2 * CELL)
