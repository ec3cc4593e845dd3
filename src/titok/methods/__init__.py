"""Transplant methods, each composed from the shared stages. `titok methods` lists them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from titok.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from collections.abc import Callable

    from titok.pipeline import Run


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    paper: str
    run: Callable[[Run], None]


def _registry() -> dict[str, Method]:
    from titok.methods import titok

    return {method.name: method for method in (titok.METHOD,)}


def available() -> dict[str, Method]:
    return _registry()


def get_method(name: str) -> Method:
    methods = _registry()
    if name not in methods:
        raise ConfigError(
            f"unknown method '{name}'{did_you_mean(name, methods)}; available: {', '.join(methods)}"
        )
    return methods[name]
