"""Option values more than one command reads the same way."""

from __future__ import annotations

from collections.abc import Iterable

from .failure import CommandFailed

__all__ = ["parse_parameters"]


def parse_parameters(values: Iterable[str], option: str = "--param") -> dict[str, str]:
    """``NAME=VALUE`` options as a mapping, the last value of a name winning.

    A value may itself hold ``=`` (only the first one splits); an empty value is kept.

    Raises:
        CommandFailed: an item with no ``=`` or no name, saying how to write it.
    """
    parameters: dict[str, str] = {}
    for item in values:
        name, equals, value = item.partition("=")
        if not equals or not name:
            raise CommandFailed(f"{option} {item!r}: write it as name=value")
        parameters[name] = value
    return parameters
