"""The servers ``mediastreams serve`` can run on, by name.

Names only, in a module of their own: ``mediastreams serve --help`` lists them without
importing the servers (Starlette and uvicorn, websockets, picows) or :mod:`mediastreams.server`.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

__all__ = ["BACKENDS", "Backend"]

Backend: TypeAlias = Literal["uvicorn", "websockets", "picows"]
"""A server to run on: ``uvicorn`` (Starlette), ``websockets`` or ``picows``."""
BACKENDS: tuple[Backend, ...] = ("uvicorn", "websockets", "picows")
"""Every :data:`Backend`, the default first."""
