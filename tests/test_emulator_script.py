"""The caller's script: frames, keys, waits, hang-ups, and where the caller spoke."""

from __future__ import annotations

import asyncio

import pytest

from emulator_apps import TONE_MULAW
from mediastreams.emulator.loudness import audible_extent, is_audible
from mediastreams.emulator.script import (
    Audio,
    CallerScript,
    Hangup,
    Press,
    Silence,
    Step,
    Utterance,
    WaitForQuiet,
    WaitForReply,
    cli_steps,
    default_steps,
    parse_audio_option,
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


def test_utterances_skip_silence_around_the_speech() -> None:
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


def test_cli_keys_without_a_time_are_turns_after_the_files() -> None:
    # As the Python script [..., Audio(...), WaitForQuiet(), Press("9")]: the caller presses
    # once the app has answered, not the moment the file ends.
    steps = cli_steps([Audio("a.wav")], [], [Press("9"), Press("5", at_ms=3000), Press("#")])
    assert steps == [
        WaitForQuiet(timeout_ms=2000),
        Audio("a.wav"),
        WaitForQuiet(timeout_ms=10_000),
        Press("9"),
        Press("5", at_ms=3000),
        WaitForQuiet(timeout_ms=10_000),
        Press("#"),
    ]
    assert cli_steps([], [], [Press("1")]) == [WaitForQuiet(timeout_ms=2000), Press("1")]


def test_the_earliest_timed_hang_up_wins() -> None:
    script = CallerScript([Hangup(at_ms=0), Hangup(at_ms=500)], end_quiet_ms=None)
    assert script.hangup_at_ms == 0


def spoken(*parts: bytes | int) -> bytes:
    """Tone for each ``bytes`` part, silence for each ``int`` (milliseconds)."""
    return b"".join(p if isinstance(p, bytes) else b"\xff" * (p * 8) for p in parts)


def test_300_ms_of_silence_ends_an_utterance_inside_one_step() -> None:
    audio = spoken(TONE_MULAW[:4000], 300, TONE_MULAW[:4000], 280, TONE_MULAW[:4000])
    script = CallerScript([Audio(audio, raw_mulaw=True)], end_quiet_ms=None)
    run(script, until_ms=3000)
    assert script.speech == [Utterance(0, 500), Utterance(800, 2080)]


def test_speech_across_steps_is_one_utterance() -> None:
    steps: list[Step] = [Audio(TONE_MULAW[:4000], raw_mulaw=True), Silence(200)]
    script = CallerScript([*steps, Audio(TONE_MULAW[:4000], raw_mulaw=True)], end_quiet_ms=None)
    run(script, until_ms=3000)
    assert script.speech == [Utterance(0, 1200)]


def test_timed_audio_is_spoken_at_its_time_and_holds_the_sequence() -> None:
    script = CallerScript(
        [
            Silence(1000),
            Press("1"),
            Audio(TONE_MULAW[:4000], raw_mulaw=True, at_ms=600),
            Hangup(),
        ],
        end_quiet_ms=None,
    )
    ticks = run(script, until_ms=5000)
    # The silence had 600 ms when the timed audio came; it takes its other 400 ms after.
    assert script.speech == [Utterance(600, 1100)]
    assert [t for t in ticks if t[1]] == [(1500, "1", False)]
    assert ticks[-1] == (1600, "", True)


def test_the_script_does_not_end_before_its_timed_audio() -> None:
    script = CallerScript([Audio(TONE_MULAW[:1600], raw_mulaw=True, at_ms=3000)], end_quiet_ms=500)
    ticks = run(script, until_ms=10_000)
    assert script.speech == [Utterance(3000, 3200)]
    assert ticks[-1] == (3700, "", True)  # then 500 ms of quiet


def test_wait_for_reply_speaks_that_long_after_the_app_starts() -> None:
    script = CallerScript(
        [WaitForReply(after_ms=300), Audio(TONE_MULAW[:1600], raw_mulaw=True)],
        end_quiet_ms=None,
    )
    for now_ms in range(0, 2000, 20):
        # The app is heard from 1000 ms on (app_spoke: it was heard in the previous tick).
        script.tick(now_ms, quiet_ms=0 if now_ms > 1000 else now_ms, app_spoke=now_ms > 1000)
    script.finish()
    assert script.speech == [Utterance(1300, 1500)]


def test_wait_for_reply_counts_from_the_reply_already_playing() -> None:
    script = CallerScript(
        [Silence(500), WaitForReply(after_ms=300), Audio(TONE_MULAW[:160], raw_mulaw=True)],
        end_quiet_ms=None,
    )
    for now_ms in range(0, 2000, 20):
        playing = now_ms > 100  # heard from 100 ms on, before the step begins at 500 ms
        script.tick(now_ms, quiet_ms=0 if playing else now_ms, app_spoke=playing)
    script.finish()
    assert script.speech == [Utterance(500, 520)]  # 400 ms into the reply: at once


def test_wait_for_reply_gives_up_when_the_app_never_speaks() -> None:
    script = CallerScript([WaitForReply(timeout_ms=400), Hangup()], end_quiet_ms=None)
    assert run(script, until_ms=5000)[-1] == (400, "", True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello.wav", Audio("hello.wav")),
        ("hello.wav@2.5", Audio("hello.wav", at_ms=2500)),
        ("me@home.wav", Audio("me@home.wav")),
        ("a@b.wav@3", Audio("a@b.wav", at_ms=3000)),
    ],
)
def test_audio_option(text: str, expected: Audio) -> None:
    assert parse_audio_option(text) == expected


@pytest.mark.parametrize("text", ["a.wav@-1", "a.wav@inf", "a.wav@nan"])
def test_bad_audio_option(text: str) -> None:
    with pytest.raises(ValueError, match="seconds"):
        parse_audio_option(text)


def test_cli_script_with_a_barge_in_and_a_timed_file() -> None:
    audio = [Audio("a.wav"), Audio("b.wav"), Audio("c.wav", at_ms=9000), Audio("d.wav")]
    assert cli_steps(audio, [None, 800, None, None]) == [
        WaitForQuiet(timeout_ms=2000),
        Audio("a.wav"),
        WaitForReply(after_ms=800),
        Audio("b.wav"),
        Audio("c.wav", at_ms=9000),
        WaitForQuiet(timeout_ms=10_000),
        Audio("d.wav"),
    ]
    with pytest.raises(ValueError, match="without @SECONDS"):
        cli_steps([Audio("c.wav", at_ms=9000)], [500])


def test_audible_extent_ends_at_the_last_loud_sample() -> None:
    assert audible_extent(TONE_MULAW[:100] + SILENCE) == 100
    assert audible_extent(SILENCE) == 0 and audible_extent(b"") == 0


def test_wait_for_quiet_at_the_start_waits_for_the_app_to_speak() -> None:
    # Nothing has played before the first tick: the caller must not take the start of the
    # call for the end of a greeting.
    from typing import Any

    from starlette.websockets import WebSocket

    from emulator_apps import media, nothing, stream_app
    from mediastreams.emulator import Hangup, place_call

    speak = Audio(TONE_MULAW[:1600], raw_mulaw=True)  # 200 ms
    silent = place_call(stream_app(nothing), [WaitForQuiet(timeout_ms=3000), speak, Hangup()])
    # The app never speaks: the caller waits the whole timeout, not one second of "quiet".
    assert [u.onset_ms for u in silent.report.utterances] == [3000]

    async def late_greeting(websocket: WebSocket, start: dict[str, Any]) -> None:
        await asyncio.sleep(1.5)
        await websocket.send_text(media(start["streamSid"], TONE_MULAW))  # 1 s, heard at once

    late = place_call(stream_app(late_greeting), [WaitForQuiet(), speak, Hangup()])
    (reply,) = late.report.replies
    (utterance,) = late.report.utterances
    # Once the greeting has played out, a second of quiet, then the caller speaks.
    assert reply.start_ms >= 1500
    assert utterance.onset_ms == reply.end_ms + 1000
