"""Where progress lines go: a ``Log`` is any callable taking one line (``print``, a list's
``append``, a logger's method); ``quiet`` drops them. Ground floor: imports nothing of neurokd."""

from __future__ import annotations

from typing import Callable

Log = Callable[[str], None]


def quiet(_: str) -> None:
    """A ``Log`` that drops every line."""
