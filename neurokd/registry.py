"""Registries: one per extension point (datasets, encoders, teachers, ...).

Adding an item is one decorated function or class; tests walk ``Registry.names()``.
"""

from __future__ import annotations

import warnings
from typing import Callable, Dict, Generic, List, TypeVar

from neurokd.errors import NeurokdError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name → factory mapping with a clear error for unknown names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: Dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(item: T) -> T:
            if name in self._items:
                warnings.warn(f"{self.kind} {name!r} registered twice; the later one wins",
                              stacklevel=2)
            self._items[name] = item
            return item

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise NeurokdError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            ) from None

    def names(self) -> List[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
