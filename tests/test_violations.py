"""Violation and Finding: what a mistake is, readable in a test's failure message."""

from __future__ import annotations

from mediastreams import diagnostics, violations
from mediastreams.violations import Finding, Violation

UNKNOWN_FIELD = Violation(
    31951,
    kind="unknown-field",
    sender="app",
    message="unknown field `media.playload`; did you mean `payload`?",
    hint="Rename `media.playload` to `media.payload`.",
    path="media.playload",
)


def test_the_diagnostics_export_the_same_objects() -> None:
    for name in violations.__all__:
        assert getattr(diagnostics, name) is getattr(violations, name), name


def test_str_of_a_violation_is_its_sender_and_description_in_full() -> None:
    assert str(UNKNOWN_FIELD) == (
        "app: 31951 Protocol - Invalid Message: unknown field `media.playload`; did you mean "
        "`payload`? Rename `media.playload` to `media.payload`."
    )


def test_str_of_a_finding_says_where_then_what() -> None:
    assert str(Finding(UNKNOWN_FIELD, 12, 0.3051)).startswith(
        "line 12, 0.305 s: app: 31951 Protocol - Invalid Message: unknown field"
    )
    assert str(Finding(UNKNOWN_FIELD, None, 1.5)).startswith("1.500 s: app: 31951")
    assert str(Finding(UNKNOWN_FIELD, None, None)) == str(UNKNOWN_FIELD)


def test_a_long_message_is_never_cut() -> None:
    url = "https://testserver/incoming-call?" + "x" * 300
    violation = Violation(
        11200, kind="webhook-status", sender="app", message=f"the voice webhook {url}", hint="."
    )
    assert url in str(Finding(violation, None, None))
