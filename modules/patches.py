"""A1111's modules.patches, for extensions that replace a function of another object and put it back later
(supermerger). Atelier itself patches nothing: this only keeps each original, by key, so undo restores it."""
from __future__ import annotations

originals: dict[str, dict[tuple[object, str], object]] = {}


def patch(key: str, obj, field: str, replacement):
    """Set obj.field to replacement and return the original; patching the same field twice under one key raises."""
    patch_key = (obj, field)
    if patch_key in originals.setdefault(key, {}):
        raise RuntimeError(f"patch for {field} is already applied")
    original = getattr(obj, field)
    originals[key][patch_key] = original
    setattr(obj, field, replacement)
    return original


def undo(key: str, obj, field: str):
    """Put back what patch replaced; returns None, or does nothing when nothing was patched."""
    patch_key = (obj, field)
    if patch_key not in originals.get(key, {}):
        return None
    setattr(obj, field, originals[key].pop(patch_key))
    return None


def original(key: str, obj, field: str):
    """The original value patch replaced under key, or None."""
    return originals.get(key, {}).get((obj, field))
