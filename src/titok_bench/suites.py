"""Bench suites: YAML files of bench settings and transplant columns (`titok bench --suite`).

A suite names the settings it changes over the default suite's (tasks, methods, source, target,
synth) and the transplant columns it adds, one line each:

    columns:
      titok:random-M: {method: titok, select: {rank_by: random}}

The bundled suites are the files in `suites/` beside this module (`default`, `ablations`,
`legacy-synth`); any other YAML file is a suite by its path. A column's name and settings are part
of its cells' keys, so a committed cell is found finished as long as its line is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from titok.core.config import read_yaml
from titok.core.errors import ConfigError, did_you_mean

SUITES_DIR = Path(__file__).parent / "suites"
# What a suite may set besides its columns (the bench settings a suite is meant to choose).
SUITE_SETTINGS = ("tasks", "methods", "source", "target", "synth", "knowledge_families")


@dataclass(frozen=True)
class Variant:
    """One transplant column: a method and the settings it changes over the bench's."""

    name: str
    method: str
    overrides: dict[str, Any] = field(default_factory=dict)
    # The expert labels the task's training questions (SPEC §2.1 external queries: a user's
    # query logs) instead of writing queries from the seeds.
    external_queries: bool = False


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    settings: dict[str, Any]
    columns: tuple[Variant, ...]


def bundled() -> dict[str, Path]:
    """The suites that come with the bench, by name."""
    return {path.stem: path for path in sorted(SUITES_DIR.glob("*.yaml"))}


def load_suite(name: str) -> Suite:
    """The suite `name`: a bundled one's name or a YAML file's path."""
    known = bundled()
    path = known.get(name) or Path(name)
    if name not in known and not (path.suffix in (".yaml", ".yml") and path.is_file()):
        raise ConfigError(
            f"no bench suite '{name}'{did_you_mean(name, known)}: give a bundled suite "
            f"({', '.join(known)}) or a YAML file"
        )
    data = read_yaml(path)
    unknown = set(data) - {"description", "columns", *SUITE_SETTINGS}
    if unknown:
        first = sorted(unknown)[0]
        raise ConfigError(
            f"{path}: unknown key '{first}'"
            f"{did_you_mean(first, ['description', 'columns', *SUITE_SETTINGS])}"
        )
    columns = []
    for column, spec in (data.get("columns") or {}).items():
        if not isinstance(spec, dict) or not isinstance(spec.get("method"), str):
            raise ConfigError(
                f"{path}: column '{column}' must be a mapping with a method, e.g. "
                "{method: titok, select: {k: 0.5}}"
            )
        overrides = {key: value for key, value in spec.items() if key != "method"}
        columns.append(Variant(str(column), spec["method"], overrides))
    return Suite(
        name=path.stem,
        description=str(data.get("description", "")),
        settings={key: data[key] for key in SUITE_SETTINGS if key in data},
        columns=tuple(columns),
    )
