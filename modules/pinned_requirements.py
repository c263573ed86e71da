"""Atelier's pinned requirements: what requirements.txt pins plus what our installed packages declare they need, all the
way down. They are written as a pip constraints file for every pip run an extension starts, checked after extension
installers ran, and used to explain pip's refusals in words.

Only the standard library is imported at module level (`packaging` inside the functions): launch.py uses this module in
a fresh venv, before requirements.txt is installed.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import re
import tempfile

REQUIREMENTS_TXT = "requirements.txt"  # how a pin from the file itself names its source


@dataclasses.dataclass
class Pin:
    name: str  # canonical distribution name
    specifier: str  # "" when nothing is asked of the version, only that it is installed
    required_by: list[str]  # "requirements.txt" and/or the installed packages that declare it

    def __str__(self) -> str:
        return f"{self.name}{self.specifier}"

    def describe(self) -> str:
        """For people: an exact pin alone (the ranges around it add nothing), and the first few that need it."""
        exact = [clause for clause in self.specifier.split(",") if clause.startswith("==")]
        needed_by = ", ".join(self.required_by[:4]) + (f" and {len(self.required_by) - 4} more" if len(self.required_by) > 4 else "")
        return f"{self.name}{exact[0] if exact else self.specifier} (needed by {needed_by})"


@dataclasses.dataclass
class Drift:
    pin: Pin
    installed: str | None  # None: not installed any more

    def __str__(self) -> str:
        now = "not installed" if self.installed is None else f"{self.pin.name} {self.installed}"
        return f"{now}, Atelier needs {self.pin.describe()}"


@dataclasses.dataclass
class Conflict:
    """What pip was asked for (by the command, or "a<1 (needed by b 2.0)" by a dependency) against one of our pins."""
    package: str
    asked: list[str]
    pin: str  # as pip printed the constraint, e.g. "pydantic<=3.0,>=2.0"
    # per asked entry: the asking package without the optional extra that brings the conflict, None if not from an extra
    without_extra: list[str | None] = dataclasses.field(default_factory=list)


def requirement_lines(path: str) -> list[str]:
    """The requirement lines of a requirements file, comments and blank lines dropped."""
    with open(path, encoding="utf8") as file:
        lines = [line.split("#", 1)[0].strip() for line in file]
    return [line for line in lines if line]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _applies(requirement, extras: frozenset[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in (extras or {""}))


def pins(requirements_path: str) -> dict[str, Pin]:
    """Every requirement of requirements.txt and, through the installed packages' metadata, of their dependencies, with
    the version ranges they declare combined; raises ImportError without `packaging` (a fresh venv)."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.specifiers import SpecifierSet

    found: dict[str, tuple[SpecifierSet, list[str]]] = {}
    queue: list[tuple[str, frozenset[str]]] = []

    def add(requirement, required_by: str) -> None:
        name = _canonical(requirement.name)
        specifier, sources = found.setdefault(name, (SpecifierSet(), []))
        found[name] = (specifier & requirement.specifier, sources + [required_by] * (required_by not in sources))
        queue.append((name, frozenset(requirement.extras)))

    for line in requirement_lines(requirements_path):
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue  # pip understands more syntax than we check; such a line is left to pip
        if _applies(requirement, frozenset()):
            add(requirement, REQUIREMENTS_TXT)
    seen = set()
    while queue:
        name, extras = queue.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for text in dist.requires or []:
            requirement = Requirement(text)
            if _applies(requirement, extras):
                add(requirement, dist.metadata["Name"])
    return {name: Pin(name, str(specifier), sources) for name, (specifier, sources) in sorted(found.items())}


def installed_versions() -> dict[str, str]:
    """{canonical name: version} of every installed distribution, read in one pass."""
    versions = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            versions.setdefault(_canonical(name), dist.version)
    return versions


def drifts(pinned: dict[str, Pin]) -> list[Drift]:
    """The pins that the installed packages no longer satisfy."""
    from packaging.specifiers import SpecifierSet

    versions = installed_versions()
    found = []
    for pin in pinned.values():
        installed = versions.get(pin.name)
        if installed is None or not SpecifierSet(pin.specifier).contains(installed, prereleases=True):
            found.append(Drift(pin, installed))
    return found


def write_constraints(pinned: dict[str, Pin], path: str) -> str:
    """Write the pins with a version range as a pip constraints file, atomically; its path."""
    lines = [f"{pin}  # {', '.join(pin.required_by)}" for pin in pinned.values() if pin.specifier]
    text = "# Atelier's pins, made from requirements.txt at start: extensions' pip runs may not change them\n"
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".constraints-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf8") as file:
            file.write(text + "\n".join(lines) + "\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


_CAUSE = re.compile(r"^\s*The conflict is caused by:\s*$")
_CONSTRAINT = re.compile(r"^The user requested \(constraint\) (?P<req>.+)$")
_REQUESTED = re.compile(r"^The user requested (?P<req>.+)$")
_DEPENDS = re.compile(r"^(?P<by>\S+ \S+) depends on (?P<req>.+)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")
_EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")
_WITH_EXTRAS = re.compile(r"^(?P<name>[^\[\s]+)\[(?P<extras>[^\]]*)\] (?P<version>\S+)$")


def _without_extra(by: str, marker: str) -> str | None:
    """"p[a,b] 1.0" whose requirement holds only for extra b -> "p[a]==1.0"; None when no extra of `by` brings it."""
    extra, asking = _EXTRA_MARKER.search(marker), _WITH_EXTRAS.match(by)
    if extra is None or asking is None:
        return None
    extras = [e.strip() for e in asking.group("extras").split(",") if e.strip()]
    if extra.group(1) not in extras:
        return None
    rest = [e for e in extras if e != extra.group(1)]
    suffix = f"[{','.join(rest)}]" if rest else ""
    return f"{asking.group('name')}{suffix}=={asking.group('version')}"


def _cause(line: str) -> tuple[str, str, bool, str | None] | None:
    """(package name, the requirement as we say it, whether it is a constraint, the asking package without the extra that
    brings it) of one line of pip's conflict report."""
    for pattern, is_constraint in ((_CONSTRAINT, True), (_REQUESTED, False), (_DEPENDS, False)):
        match = pattern.match(line.strip())
        if match is None:
            continue
        requirement, _, marker = (part.strip() for part in match.group("req").partition(";"))
        name = _NAME.match(requirement)
        if name is None:
            return None
        by = match.groupdict().get("by")
        said = f"{requirement} (needed by {by})" if by else requirement
        return _canonical(name.group(0)), said, is_constraint, _without_extra(by, marker) if by else None
    return None


def conflicts(pip_output: str) -> list[Conflict]:
    """The conflicts with a constraint that pip reported ("The conflict is caused by:" blocks) in its output."""
    found: dict[str, Conflict] = {}
    lines = pip_output.splitlines()
    for start, line in enumerate(lines):
        if not _CAUSE.match(line):
            continue
        causes = []
        for text in lines[start + 1:]:
            if not text.strip():
                break
            causes.append(_cause(text))
        causes = [cause for cause in causes if cause]
        pinned = {name: said for name, said, is_constraint, _ in causes if is_constraint}
        for name, said, is_constraint, without_extra in causes:
            if is_constraint or name not in pinned:
                continue
            conflict = found.setdefault(name, Conflict(name, [], pinned[name]))
            if said not in conflict.asked:
                conflict.asked.append(said)
                conflict.without_extra.append(without_extra)
    return list(found.values())


def without_conflicting_extras(found: list[Conflict]) -> list[str]:
    """When every conflict comes from an optional extra (dynamicprompts[magicprompt] needs transformers<5), the asking
    packages without those extras, which may well install; otherwise nothing."""
    fallbacks = [requirement for conflict in found for requirement in conflict.without_extra]
    if not fallbacks or None in fallbacks:
        return []
    return sorted(set(fallbacks))


def explain(found: list[Conflict], pinned: dict[str, Pin]) -> str:
    """One sentence per conflict: what was asked, against which of our pins and why we have it."""
    sentences = []
    for conflict in found:
        asked = " and ".join(conflict.asked)
        pin = pinned.get(conflict.package)
        ours = pin.describe() if pin else conflict.pin
        sentences.append(f"{asked} conflicts with Atelier's {ours}")
    return ". ".join(sentences)
