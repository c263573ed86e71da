"""The extension index of the Extensions tab's Available list (A1111's index.json): which entries are installed, which
the tag filter and the search hide, and their sort order. Pure logic: the UI (modules.ui_extensions) renders the result.

An index is {"tags": {tag: description}, "extensions": [{name, url, description, tags, added, created_at, commit_time,
stars}, ...]}; every field of an entry but the URL may be missing or malformed.
"""
from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from modules.extensions import Extension, dirname_from_url, normalize_git_url

INSTALLED_TAG = "installed"
TAG_CHOICES = ["script", "ads", "localization", INSTALLED_TAG]
DEFAULT_TAGS = ["ads", "localization", INSTALLED_TAG]
SORT_ORDERS = ["newest first", "oldest first", "a-z", "z-a", "internal order", "update time", "create time", "stars"]
SHOWING_TYPES = ["hide", "show"]
FILTERING_TYPES = ["or", "and"]


@dataclass(frozen=True)
class Installed:
    """What is installed, as A1111 tells it: an index URL matches by its folder name or by a clone's remote URL."""
    names: frozenset[str]
    remotes: frozenset[str]

    @classmethod
    def of(cls, extensions: Iterable[Extension]) -> Installed:
        extensions = list(extensions)
        for ext in extensions:
            ext.read_info_from_repo()
        return cls(frozenset(ext.name for ext in extensions),
                   frozenset(normalize_git_url(ext.remote) for ext in extensions if ext.remote))

    def __contains__(self, url: str) -> bool:
        return dirname_from_url(url) in self.names or normalize_git_url(url) in self.remotes


@dataclass(frozen=True)
class Entry:
    """One extension of the index as the Available table shows it; None where the index has no usable value."""
    name: str | None
    url: str
    description: str
    tags: tuple[str, ...]  # the index's tags, then "installed" when it is
    installed: bool
    added: str | None
    updated: datetime.datetime | None
    created: datetime.datetime | None
    stars: int | None

    @property
    def title(self) -> str:
        return self.name if self.name is not None else "noname"


def _text(value) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _time(value) -> datetime.datetime | None:
    """A GitHub time ("2024-01-02T03:04:05Z"); a time without a zone is taken as UTC."""
    try:
        moment = datetime.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _stars(value) -> int | None:
    if isinstance(value, bool):  # a bool is an int to Python, not a star count
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: JSON's Infinity
        return None


def entries(index: dict, installed: Installed) -> list[Entry]:
    """The index's extensions in index order; those without a URL are left out, as A1111 does."""
    found = []
    for item in index.get("extensions", []):
        if not isinstance(item, dict) or not _text(item.get("url")):
            continue
        url = item["url"].strip()
        tags = [str(tag) for tag in item["tags"]] if isinstance(item.get("tags"), list) else []
        is_installed = url in installed
        if is_installed and INSTALLED_TAG not in tags:
            tags.append(INSTALLED_TAG)
        found.append(Entry(
            name=_text(item.get("name")), url=url, description=str(item.get("description") or ""),
            tags=tuple(dict.fromkeys(tags)), installed=is_installed, added=_text(item.get("added")),
            updated=_time(item.get("commit_time", item.get("updated"))), created=_time(item.get("created_at")),
            stars=_stars(item.get("stars"))))
    return found


# order name -> (key, newest/largest first); a None key is a missing field
_ORDERS: dict[str, tuple[Callable[[Entry], object], bool]] = {
    "newest first": (lambda e: e.added, True),
    "oldest first": (lambda e: e.added, False),
    "a-z": (lambda e: e.name.casefold() if e.name else None, False),
    "z-a": (lambda e: e.name.casefold() if e.name else None, True),
    "internal order": (lambda e: 0, False),
    "update time": (lambda e: e.updated, True),
    "create time": (lambda e: e.created, True),
    "stars": (lambda e: e.stars, True),
}


def sort_entries(found: list[Entry], order: int | str | None) -> list[Entry]:
    """Sorted by one of SORT_ORDERS (its name or its index, as the radio gives it; anything else is "newest first").
    Entries missing the field come last in index order; equal keys keep index order."""
    name = SORT_ORDERS[order] if isinstance(order, int) and 0 <= order < len(SORT_ORDERS) else order
    key, reverse = _ORDERS.get(name, _ORDERS[SORT_ORDERS[0]])
    present = [entry for entry in found if key(entry) is not None]
    missing = [entry for entry in found if key(entry) is None]
    return sorted(present, key=key, reverse=reverse) + missing


def hidden_by_tags(entry: Entry, selected: Iterable[str], showing: str = "hide", filtering: str = "or") -> bool:
    """A1111's tag filter: "or" matches an entry with any selected tag, "and" one with all of them; "hide" hides the
    matches, "show" shows only them. No tag selected filters nothing."""
    selected = set(selected or [])
    if not selected:
        return False
    matched = selected & set(entry.tags)
    match = bool(matched) if filtering != "and" else matched == selected
    return match if showing != "show" else not match


def matches_search(entry: Entry, text: str) -> bool:
    needle = (text or "").strip().lower()
    return not needle or needle in entry.title.lower() or needle in entry.description.lower()


def available_view(index: dict, installed: Installed, selected: Iterable[str], order: int | str | None, search: str = "",
                   showing: str = "hide", filtering: str = "or") -> tuple[list[Entry], int]:
    """The entries the Available table shows, in order, and how many the tag filter and the search hid."""
    selected = list(selected or [])
    found = entries(index, installed)
    shown = [entry for entry in sort_entries(found, order)
             if not hidden_by_tags(entry, selected, showing, filtering) and matches_search(entry, search)]
    return shown, len(found) - len(shown)


def tag_descriptions(index: dict) -> dict[str, str]:
    tags = index.get("tags")
    return {str(tag): str(text) for tag, text in tags.items()} if isinstance(tags, dict) else {}


def tag_choices(index: dict) -> list[str]:
    """The tag checkboxes: A1111's four, then the index's described tags, then any other tag its entries use."""
    found = [str(tag) for item in index.get("extensions", []) if isinstance(item, dict) and isinstance(item.get("tags"), list)
             for tag in item["tags"]]
    return list(dict.fromkeys([*TAG_CHOICES, *tag_descriptions(index), *found]))
