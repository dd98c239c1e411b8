"""The labeler's rules as data: :func:`load_rules` reads and validates ``rules.toml`` beside this module.

The tables (target phrases, what each category means, ConText modifiers, section names, label wording)
live in the data file so they can be read and tuned without reading code; this module turns them into
a typed, immutable :class:`Rules` and refuses a file that would label wrongly (a bad regex, an unknown
finding, a category that means nothing), naming the entry to fix.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any, TypeAlias

from medrag.errors import ConfigError
from medrag.records import FINDINGS

#: A case-insensitive regex, or a spaCy token pattern (a list of token attribute tables).
Pattern: TypeAlias = str | list[dict[str, Any]]

RULES_FILE = "rules.toml"
#: ConText directions medspaCy knows.
DIRECTIONS = frozenset({"FORWARD", "BACKWARD", "BIDIRECTIONAL", "TERMINATE", "PSEUDO"})
_FRAGMENT = re.compile(r"\{([A-Z][A-Z0-9_]*)\}")


@dataclass(frozen=True)
class ModifierGroup:
    """ConText modifiers sharing one category, direction and scope (``max_scope`` None: the whole sentence)."""

    category: str
    direction: str
    max_scope: int | None
    patterns: tuple[Pattern, ...]


@dataclass(frozen=True)
class Rules:
    """Every table the labeler reads (see ``rules.toml`` for what each one means)."""

    targets: Mapping[str, tuple[Pattern, ...]]
    category_findings: Mapping[str, tuple[str, ...]]
    abnormal_only: frozenset[str]
    normal: frozenset[str]
    #: categories whose (un-negated) mention says a finding is absent ("heart size is normal")
    normal_for: Mapping[str, tuple[str, ...]]
    modifiers: tuple[ModifierGroup, ...]
    skipped_sections: frozenset[str]
    kept_sections: tuple[str, ...]
    display: Mapping[str, str]
    size_words: tuple[str, ...]
    side_words: Mapping[str, str]
    site_words: tuple[str, ...]
    hedged_reading: str
    max_label_parts: int


class _Reader:
    """Typed access to the parsed file; every error names the entry and the file."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> ConfigError:
        return ConfigError(
            f"The labeler's rules file {self.source} is invalid at {where}: {problem}. "
            "Fix that entry, or reinstall MedRAG (`pip install -e .`) to restore the shipped file."
        )

    def table(self, data: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
        value = data.get(key)
        if not isinstance(value, dict):
            raise self.fail(f"{where}{key}", "expected a table")
        return value

    def strings(self, value: Any, where: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(where, "expected a list of non-empty strings")
        return tuple(value)

    def regex(self, value: str, where: str) -> str:
        try:
            re.compile(value, re.IGNORECASE)
        except re.error as exc:
            raise self.fail(where, f"the regex does not compile ({exc})") from None
        return value

    def pattern(self, value: Any, where: str, fragments: Mapping[str, str]) -> Pattern:
        if isinstance(value, str):
            for name in _FRAGMENT.findall(value):
                if name not in fragments:
                    raise self.fail(where, f"unknown fragment {{{name}}}; define it under [fragments]")
            expanded = _FRAGMENT.sub(lambda m: fragments[m.group(1)], value)
            return self.regex(expanded, where)
        if isinstance(value, list) and value and all(isinstance(token, dict) and token for token in value):
            return value
        raise self.fail(where, "expected a regex string or a token pattern (a list of tables)")


def _targets(r: _Reader, data: Mapping[str, Any]) -> tuple[dict[str, tuple[Pattern, ...]], dict[str, str]]:
    fragments = r.table(data, "fragments", "")
    for name, value in fragments.items():
        if not _FRAGMENT.fullmatch("{" + name + "}") or not isinstance(value, str):
            raise r.fail(f"fragments.{name}", "expected NAME = 'regex' with an upper-case NAME")
        r.regex(value, f"fragments.{name}")
    targets: dict[str, tuple[Pattern, ...]] = {}
    for category, patterns in r.table(data, "targets", "").items():
        if not isinstance(patterns, list) or not patterns:
            raise r.fail(f"targets.{category}", "expected a non-empty list of patterns")
        targets[category] = tuple(
            r.pattern(p, f"targets.{category}[{i}]", fragments) for i, p in enumerate(patterns)
        )
    return targets, fragments


def _categories(
    r: _Reader, data: Mapping[str, Any], targets: Mapping[str, object]
) -> tuple[dict[str, tuple[str, ...]], frozenset[str], frozenset[str], dict[str, tuple[str, ...]]]:
    categories = r.table(data, "categories", "")
    abnormal_only = frozenset(r.strings(categories.get("abnormal_only"), "categories.abnormal_only"))
    normal = frozenset(r.strings(categories.get("normal"), "categories.normal"))
    findings_named = [f for f in FINDINGS if f != "no finding"]
    category_findings = _finding_table(r, categories, "findings", findings_named)
    normal_for = _finding_table(r, categories, "normal_for", findings_named)
    kinds = (category_findings.keys(), abnormal_only, normal, normal_for.keys())
    for category in targets:
        if sum(category in kind for kind in kinds) != 1:
            raise r.fail(
                f"targets.{category}",
                "the category must be in exactly one of categories.findings, categories.abnormal_only, "
                "categories.normal and categories.normal_for",
            )
    orphans = sorted((set(category_findings) | abnormal_only | normal | set(normal_for)) - set(targets))
    if orphans:
        raise r.fail(f"categories ({orphans[0]})", "no [targets] entry has this category")
    return category_findings, abnormal_only, normal, normal_for


def _finding_table(
    r: _Reader, categories: Mapping[str, Any], name: str, findings_named: list[str]
) -> dict[str, tuple[str, ...]]:
    """``[categories.<name>]``: category → the findings it speaks of (each must be a known finding)."""
    table: dict[str, tuple[str, ...]] = {}
    present = name in categories or name == "findings"
    for category, findings in (r.table(categories, name, "categories.") if present else {}).items():
        where = f"categories.{name}.{category}"
        table[category] = r.strings(findings, where)
        for finding in table[category]:
            if finding not in findings_named:
                raise r.fail(where, f"{finding!r} is not a finding; use one of {', '.join(findings_named)}")
    return table


def _modifiers(r: _Reader, data: Mapping[str, Any], fragments: Mapping[str, str]) -> tuple[ModifierGroup, ...]:
    groups: dict[tuple[str, str, int | None], list[Pattern]] = {}
    context = data.get("context")
    if not isinstance(context, list) or not context:
        raise r.fail("context", "expected [[context]] groups")
    for i, group in enumerate(context):
        where = f"context[{i}]"
        if not isinstance(group, dict):
            raise r.fail(where, "expected a table")
        category, direction = group.get("category"), group.get("direction")
        max_scope = group.get("max_scope")
        if not isinstance(category, str) or not category.isupper():
            raise r.fail(f"{where}.category", "expected an upper-case ConText category")
        if not isinstance(direction, str) or direction not in DIRECTIONS:
            raise r.fail(f"{where}.direction", f"expected one of {', '.join(sorted(DIRECTIONS))}")
        if max_scope is not None and (type(max_scope) is not int or max_scope < 1):
            raise r.fail(f"{where}.max_scope", "expected a positive number of tokens (or no max_scope)")
        patterns = group.get("patterns")
        if not isinstance(patterns, list) or not patterns:
            raise r.fail(f"{where}.patterns", "expected a non-empty list of patterns")
        # Groups with the same key become one rule set, in the order they first appear.
        groups.setdefault((category, direction, max_scope), []).extend(
            r.pattern(p, f"{where}.patterns[{j}]", fragments) for j, p in enumerate(patterns)
        )
    return tuple(ModifierGroup(c, d, m, tuple(p)) for (c, d, m), p in groups.items())


def parse_rules(data: Mapping[str, Any], source: str = RULES_FILE) -> Rules:
    """Validate parsed ``rules.toml`` content into :class:`Rules` (raises :class:`ConfigError`)."""
    r = _Reader(source)
    known = {"fragments", "targets", "categories", "context", "sections", "wording"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise r.fail(unknown[0], f"unknown table; expected one of {', '.join(sorted(known))}")
    targets, fragments = _targets(r, data)
    category_findings, abnormal_only, normal, normal_for = _categories(r, data, targets)
    modifiers = _modifiers(r, data, fragments)

    sections = r.table(data, "sections", "")
    wording = r.table(data, "wording", "")
    display = r.table(wording, "display", "wording.")
    missing = [f for f in FINDINGS if f != "no finding" and f not in display]
    if missing or not all(isinstance(v, str) and v for v in display.values()):
        raise r.fail("wording.display", f"every finding needs a display name (missing: {', '.join(missing)})")
    side = r.table(wording, "side", "wording.")
    if not all(isinstance(v, str) and v for v in side.values()):
        raise r.fail("wording.side", "expected word = 'written as' strings")
    hedged = wording.get("hedged_reading")
    if not isinstance(hedged, str):
        raise r.fail("wording.hedged_reading", "expected a regex string")
    max_parts = wording.get("max_label_parts")
    if type(max_parts) is not int or max_parts < 2:
        raise r.fail("wording.max_label_parts", "expected a whole number of at least 2")

    return Rules(
        targets=MappingProxyType(targets),
        category_findings=MappingProxyType(category_findings),
        abnormal_only=abnormal_only,
        normal=normal,
        normal_for=normal_for,
        modifiers=modifiers,
        skipped_sections=frozenset(r.strings(sections.get("skipped"), "sections.skipped")),
        kept_sections=r.strings(sections.get("kept"), "sections.kept"),
        display=MappingProxyType(dict(display)),
        size_words=r.strings(wording.get("size"), "wording.size"),
        side_words=MappingProxyType(dict(side)),
        site_words=r.strings(wording.get("site"), "wording.site"),
        hedged_reading=r.regex(hedged, "wording.hedged_reading"),
        max_label_parts=max_parts,
    )


@cache
def load_rules() -> Rules:
    """The shipped rules (read once per process; raises :class:`ConfigError` naming a bad entry)."""
    resource = resources.files("medrag.labels").joinpath(RULES_FILE)
    source = f"medrag/labels/{RULES_FILE}"
    try:
        data = tomllib.loads(resource.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"The labeler's rules file {source} is missing; reinstall MedRAG (`pip install -e .`)."
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"The labeler's rules file {source} is not valid TOML ({exc}); fix it or reinstall MedRAG."
        ) from None
    return parse_rules(data, source)


__all__ = ["DIRECTIONS", "ModifierGroup", "Pattern", "Rules", "load_rules", "parse_rules"]
