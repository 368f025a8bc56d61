"""Name -> class registries for models, heads, optimisers and schedulers.

Configs name components by their registered name; an unknown name is an error that lists
every registered choice (no ``eval``, no import by path).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of constructors.

    Args:
        kind: What the registry holds ("model", "head", ...), used in error messages.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._table: Dict[str, Callable[..., T]] = {}

    def register(self, name: str | None = None) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering a class or factory under ``name`` (default: its ``__name__``)."""

        def decorator(obj: Callable[..., T]) -> Callable[..., T]:
            key = name or obj.__name__
            if key in self._table:
                raise KeyError(f"{self.kind} '{key}' is already registered")
            self._table[key] = obj
            return obj

        return decorator

    def get(self, name: str) -> Callable[..., T]:
        """Returns the constructor registered as ``name``.

        Raises:
            KeyError: if ``name`` is unknown; the message lists the valid choices.
        """
        if name not in self._table:
            raise KeyError(f"unknown {self.kind} '{name}'; choose one of: {', '.join(sorted(self._table))}")
        return self._table[name]

    def build(self, name: str, **kwargs: Any) -> T:
        """Constructs the component ``name`` with ``kwargs``.

        Raises:
            KeyError: if ``name`` is unknown.
            TypeError: if ``kwargs`` holds an argument the component does not take.
        """
        constructor = self.get(name)
        try:
            return constructor(**kwargs)
        except TypeError as error:
            raise TypeError(f"{self.kind} '{name}': {error}") from error

    def names(self) -> list[str]:
        """Sorted registered names."""
        return sorted(self._table)

    def __contains__(self, name: str) -> bool:
        return name in self._table
