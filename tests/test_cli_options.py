"""Option values shared by the commands."""

from __future__ import annotations

import pytest

from mediastreams.cli.failure import CommandFailed
from mediastreams.cli.options import parse_parameters


def test_name_value_pairs_split_at_the_first_equals_sign() -> None:
    assert parse_parameters(["tenant=acme", "query=a=b", "empty="]) == {
        "tenant": "acme",
        "query": "a=b",
        "empty": "",
    }
    assert parse_parameters(["a=1", "a=2"]) == {"a": "2"}
    assert parse_parameters([]) == {}


@pytest.mark.parametrize("item", ["novalue", "=value", ""])
def test_an_item_without_a_name_or_an_equals_sign_is_refused(item: str) -> None:
    with pytest.raises(CommandFailed) as refused:
        parse_parameters(["ok=1", item], option="--param")
    assert refused.value.message == f"--param {item!r}: write it as name=value"
