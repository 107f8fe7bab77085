import json

import pytest

from mediastreams import strictjson
from mediastreams.strictjson import (
    MAX_DEPTH,
    MAX_INT_DIGITS,
    MAX_MEMBERS,
    DuplicateKey,
    LoneSurrogate,
    NotJSON,
    NumberTooLong,
    TooDeep,
    TooManyMembers,
    load,
)


def nested(depth: int, opener: str = "[", closer: str = "]", inner: str = "") -> str:
    return opener * depth + inner + closer * depth


@pytest.mark.parametrize(("opener", "closer"), [("[", "]"), ('{"a":', "}")])
def test_depth_up_to_the_bound_is_read(opener: str, closer: str) -> None:
    inner = "1" if opener != "[" else ""
    assert load(nested(MAX_DEPTH, opener, closer, inner)) is not None
    with pytest.raises(TooDeep):
        load(nested(MAX_DEPTH + 1, opener, closer, inner))


def test_deep_nesting_is_refused_however_deep() -> None:
    for depth in (MAX_DEPTH + 1, 1000, 30_000):
        with pytest.raises(TooDeep):
            load('{"event":"media","x":' + nested(depth) + "}")
    with pytest.raises(TooDeep):  # unclosed: not JSON, but the decoder must not recurse into it
        load("[" * 50_000)


def test_depth_is_exact_among_siblings_and_leaves() -> None:
    # Leaves and flat siblings around the deepest point do not change the depth.
    wide = "[" + ",".join(["[]", "[[]]", nested(MAX_DEPTH - 1), "[[[]]]"] * 50) + "]"
    assert isinstance(load(wide), list)
    deeper = "[" + ",".join(["[]", nested(MAX_DEPTH), "[[]]"]) + "]"
    with pytest.raises(TooDeep):
        load(deeper)


def test_brackets_inside_strings_are_not_nesting() -> None:
    text = json.dumps({"name": "[" * 1000 + '\\"{' * 100, "other": '"[[[['})
    assert load(text)["name"].startswith("[[[")


def test_escaped_quotes_and_backslashes_do_not_hide_nesting() -> None:
    # "\\" then a real closing quote: the brackets after it are structure.
    text = '["\\\\",' + nested(MAX_DEPTH + 1) + "]"
    with pytest.raises(TooDeep):
        load(text)


def test_duplicate_keys_are_refused_at_any_depth() -> None:
    with pytest.raises(DuplicateKey) as caught:
        load('{"event":"media","event":"clear"}')
    assert caught.value.key == "event"
    with pytest.raises(DuplicateKey):
        load('{"media":{"payload":"AA==","payload":"AA=="}}')


def test_lone_surrogates_are_refused_pairs_are_not() -> None:
    assert load('{"name":"\\ud83d\\ude00"}') == {"name": "😀"}
    for text in (
        '{"streamSid":"\\ud800"}',
        '{"streamSid":"\\udc00"}',
        '{"streamSid":"\\udc00\\ud800"}',
        '{"\\ud800":"key"}',
        '["\\ud83d"]',
        '{"x":"\ud800"}',  # a raw surrogate in a str
    ):
        with pytest.raises(LoneSurrogate):
            load(text)
    # An escaped backslash then "ud800" is plain text, not an escape.
    assert load('{"x":"\\\\ud800"}') == {"x": "\\ud800"}


def test_nan_infinity_and_long_integers_are_refused() -> None:
    for text in ('{"x":NaN}', '{"x":-Infinity}', "{"):
        with pytest.raises(NotJSON):
            load(text)
    assert load('{"x":' + "9" * MAX_INT_DIGITS + "}")["x"] > 0
    with pytest.raises(NumberTooLong):
        load('{"x":' + "9" * (MAX_INT_DIGITS + 1) + "}")


def test_long_integers_are_refused_where_python_no_longer_bounds_them() -> None:
    import sys

    previous = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        with pytest.raises(NumberTooLong):
            load('{"x":' + "9" * (MAX_INT_DIGITS + 1) + "}")
        assert load('{"x":[1,2,3]}') == {"x": [1, 2, 3]}
    finally:
        sys.set_int_max_str_digits(previous)


def test_keys_and_objects_are_bounded() -> None:
    keys = ",".join(f'"k{i}":1' for i in range(MAX_MEMBERS - 1))
    assert len(load("{" + keys + "}")) == MAX_MEMBERS - 1
    with pytest.raises(TooManyMembers):
        load("{" + keys + ',"z":1,"y":2}')
    with pytest.raises(TooManyMembers):
        load("[" + ",".join(["{}"] * (MAX_MEMBERS + 1)) + "]")


def test_every_error_is_a_value_error_with_a_sentence() -> None:
    for error in (NotJSON, TooDeep, TooManyMembers, LoneSurrogate, NumberTooLong):
        assert issubclass(error, strictjson.StrictJSONError)
        assert issubclass(error, ValueError)
    assert str(DuplicateKey("k" * 500)).endswith("appears twice in one object")
    assert len(str(DuplicateKey("k" * 500))) < 120
