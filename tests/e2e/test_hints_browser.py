"""Tooltips (A1111's hints) in Chromium: every button of txt2img and img2img has a title, the tool buttons and the
generation controls ours from javascript/hints.js."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e

UNTITLED = """(tab) => [...document.querySelectorAll(`#tab_${tab} button`)]
    .filter((b) => b.offsetParent !== null && !b.title.trim()).map((b) => b.id || b.outerHTML.slice(0, 80))"""


def hint(page, selector: str) -> str:
    return page.locator(selector).first.get_attribute("title") or ""


@pytest.mark.parametrize("tab", ["txt2img", "img2img"])
def test_every_button_has_a_title(page, tab):
    page.locator(f"#tab_{tab}-button").dispatch_event("click")
    page.wait_for_selector(f"#{tab}_generate", state="visible")
    page.wait_for_function(f"() => document.querySelector('#{tab}_generate').title !== ''")
    assert page.evaluate(UNTITLED, tab) == []
    assert hint(page, f"#{tab}_generate").startswith("Make images")
    assert hint(page, f"#{tab}_clear_prompt") == "Clear prompt"  # promptTools.js, A1111's
    assert hint(page, f"#{tab}_random_seed").startswith("Random seed: set the seed to -1")
    assert hint(page, f"#{tab}_steps span[title]").startswith("How many denoising steps")
    assert hint(page, f"#{tab}_cfg_scale span[title]").startswith("How closely the image follows the prompt")
