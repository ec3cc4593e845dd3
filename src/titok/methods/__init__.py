"""Transplant methods, each a chain of shared stages with method-specific settings.

`titok methods` lists them; `--method NAME` picks one. A method fixes the settings that define it
(e.g. KD trains every token of a random M samples); everything else stays the user's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from titok.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from titok.config import TransplantConfig
    from titok.pipeline import Stage

log = logging.getLogger(__name__)


def _nothing(config: TransplantConfig) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    paper: str
    stages: tuple[Stage, ...]
    # Settings the method defines, as nested {section: {field: value}}, given the user's config.
    fixed: Callable[[TransplantConfig], dict[str, Any]] = field(default=_nothing)

    def configure(self, config: TransplantConfig) -> TransplantConfig:
        """`config` with the method's own settings applied (a warning for each flag overridden)."""
        fixed = self.fixed(config)
        if not fixed:
            return config
        for section, values in fixed.items():
            current = getattr(config, section)
            for name, value in values.items():
                if name in current.model_fields_set and getattr(current, name) != value:
                    log.warning(
                        "method %s sets %s.%s = %r (the given %r is not used)",
                        self.name,
                        section,
                        name,
                        value,
                        getattr(current, name),
                    )
        data = config.model_dump()
        for section, values in fixed.items():
            data[section] = {**data[section], **values}
        return type(config).model_validate(data)


def _registry() -> dict[str, Method]:
    from titok.methods import kd, titok, translora, tuneshift

    methods = (titok.METHOD, *kd.METHODS, translora.METHOD, tuneshift.METHOD)
    return {method.name: method for method in methods}


def available() -> dict[str, Method]:
    return _registry()


def get_method(name: str) -> Method:
    methods = _registry()
    if name not in methods:
        raise ConfigError(
            f"unknown method '{name}'{did_you_mean(name, methods)}; available: {', '.join(methods)}"
        )
    return methods[name]
