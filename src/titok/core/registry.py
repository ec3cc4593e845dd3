"""Registries: what titok finds by name (methods, task families), filled by registration."""

from __future__ import annotations

from typing import Generic, TypeVar

from titok.core.errors import ConfigError

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    """Name -> item, in registration order. Registering a second item under a taken name is an
    error (one of the two would silently win); the same item again is nothing."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def add(self, name: str, item: T) -> T:
        known = self.get(name)
        if known is not None and known is not item:
            raise ConfigError(f"two {self.kind}s are named '{name}': rename one of them")
        self[name] = item
        return item
