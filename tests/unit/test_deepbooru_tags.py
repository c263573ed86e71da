"""DeepBooru's tag text from scores under A1111's settings: threshold, rating tags, sort, filter, spaces, escapes, ranks."""
from types import SimpleNamespace

from modules.deepbooru import format_tags

SCORES = {"long_hair": 0.9, "kirby_(series)": 0.7, "blue_sky": 0.55, "smile": 0.5, "hat": 0.49, "rating:safe": 0.99}


def settings(**changes):
    base = {"interrogate_deepbooru_score_threshold": 0.5, "deepbooru_sort_alpha": True, "deepbooru_use_spaces": True,
            "deepbooru_escape": True, "deepbooru_filter_tags": "", "interrogate_return_ranks": False}
    return SimpleNamespace(**{**base, **changes})


def test_a1111_defaults_keep_scores_at_the_threshold_sorted_by_name_with_spaces_and_escapes():
    assert format_tags(SCORES, settings()) == r"blue sky, kirby \(series\), long hair, smile"


def test_sorted_by_score_with_underscores_unescaped():
    text = format_tags(SCORES, settings(deepbooru_sort_alpha=False, deepbooru_use_spaces=False, deepbooru_escape=False))
    assert text == "long_hair, kirby_(series), blue_sky, smile"


def test_filter_names_tags_with_spaces_or_underscores_and_ranks_show_scores():
    text = format_tags(SCORES, settings(deepbooru_filter_tags="long hair, blue_sky", interrogate_return_ranks=True,
                                        interrogate_deepbooru_score_threshold=0.6))
    assert text == r"(kirby \(series\):0.700)"
    assert format_tags(SCORES, settings(interrogate_return_ranks=True), include_ranks=False).startswith("blue sky,")
