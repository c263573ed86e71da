"""Infotext ("generation parameters"): the text stored with every image, in A1111's exact layout."""
import json


def quote(value) -> str:
    """Write a value as A1111 does: raw, or JSON-quoted when it would break the `Key: value, ...` line."""
    text = str(value)
    if "," not in text and ":" not in text and "\n" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def create_infotext(prompt: str, negative_prompt: str, params: dict) -> str:
    """Join prompt, negative prompt and the already-ordered parameters into A1111's three-part layout."""
    pairs = ", ".join(key if key == value else f"{key}: {quote(value)}" for key, value in params.items() if value is not None)
    negative_line = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative_line}\n{pairs}".strip()
