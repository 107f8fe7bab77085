"""The caller's script: frames, keys, waits, hang-ups, and where the caller spoke."""

from __future__ import annotations

import pytest

from emulator_apps import TONE_MULAW
from mediastreams.emulator.script import (
    Audio,
    CallerScript,
    Hangup,
    Press,
    Silence,
    Utterance,
    WaitForQuiet,
    default_steps,
    is_audible,
    parse_dtmf_option,
)

SILENCE = b"\xff" * 160


def run(script: CallerScript, *, until_ms: int, quiet: bool = True) -> list[tuple[int, str, bool]]:
    """(time, digits, hang_up) for every tick, with the app quiet (or always talking)."""
    ticks = []
    for now_ms in range(0, until_ms, 20):
        frame, digits, hang_up = script.tick(
            now_ms, quiet_ms=now_ms if quiet else 0, app_spoke=not quiet
        )
        assert len(frame) == 160
        ticks.append((now_ms, digits, hang_up))
        if hang_up:
            break
    script.finish()
    return ticks


def test_audio_then_silence_then_hang_up_in_sequence() -> None:
    script = CallerScript(
        [Audio(TONE_MULAW, raw_mulaw=True), Silence(500), Hangup()], end_quiet_ms=None
    )
    ticks = run(script, until_ms=5000)
    assert ticks[-1] == (1500, "", True)
    assert script.speech == [Utterance(0, 1000)]


def test_timed_keys_and_hang_up() -> None:
    script = CallerScript([Press("12", at_ms=100), Hangup(at_ms=300)], end_quiet_ms=None)
    ticks = run(script, until_ms=1000)
    assert [t for t in ticks if t[1]] == [(100, "12", False)]
    assert ticks[-1] == (300, "", True)


def test_keys_in_sequence_take_100_ms_each() -> None:
    script = CallerScript([Press("34"), Hangup()], end_quiet_ms=None)
    ticks = run(script, until_ms=1000)
    assert ticks[0] == (0, "34", False)
    assert ticks[-1] == (200, "", True)


def test_wait_for_quiet_gives_up_when_the_app_never_speaks() -> None:
    script = CallerScript([WaitForQuiet(timeout_ms=400), Hangup()], end_quiet_ms=None)
    assert run(script, until_ms=5000)[-1] == (400, "", True)


def test_wait_for_quiet_waits_while_the_app_talks() -> None:
    script = CallerScript([WaitForQuiet(timeout_ms=400), Hangup()], end_quiet_ms=None)
    assert not any(hang_up for _, _, hang_up in run(script, until_ms=3000, quiet=False))


def test_by_default_the_caller_hangs_up_once_the_app_has_been_quiet() -> None:
    script = CallerScript([], end_quiet_ms=1000)
    assert run(script, until_ms=5000)[-1] == (1000, "", True)


def test_speech_spans_skip_silence_inside_the_audio() -> None:
    audio = SILENCE * 10 + TONE_MULAW + SILENCE * 10
    script = CallerScript([Audio(audio, raw_mulaw=True)], end_quiet_ms=None)
    run(script, until_ms=2000)
    assert script.speech == [Utterance(200, 1200)]
    assert script.total_audio_ms == 1400


def test_is_audible() -> None:
    assert is_audible(TONE_MULAW[:160])
    assert not is_audible(SILENCE) and not is_audible(b"")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("12#@2.5", Press("12#", at_ms=2500)), ("9", Press("9")), ("0@0", Press("0", at_ms=0))],
)
def test_dtmf_option(text: str, expected: Press) -> None:
    assert parse_dtmf_option(text) == expected


@pytest.mark.parametrize("text", ["1@later", "1@-2", "x@1", "@1", ""])
def test_bad_dtmf_option(text: str) -> None:
    with pytest.raises(ValueError):
        parse_dtmf_option(text)


def test_cli_script_takes_turns() -> None:
    steps = default_steps(["a.wav", "b.wav"])
    assert steps == [
        WaitForQuiet(timeout_ms=2000),
        Audio("a.wav"),
        WaitForQuiet(timeout_ms=10_000),
        Audio("b.wav"),
    ]


def test_the_earliest_timed_hang_up_wins() -> None:
    script = CallerScript([Hangup(at_ms=0), Hangup(at_ms=500)], end_quiet_ms=None)
    assert script.hangup_at_ms == 0
