"""The recording: what the caller heard, and both sides in stereo, on one timeline."""

from __future__ import annotations

import io
import wave

from emulator_apps import TONE_MULAW
from mediastreams.audio import mulaw
from mediastreams.emulator import Recorder


def test_short_playout_is_padded_with_silence_and_the_prelude_comes_first() -> None:
    recorder = Recorder()
    recorder.add_prelude(TONE_MULAW[:80])
    recorder.add(TONE_MULAW[:160], TONE_MULAW[:100])
    assert recorder.heard_mulaw == TONE_MULAW[:80] + TONE_MULAW[:100] + b"\xff" * 60
    assert recorder.caller_mulaw == b"\xff" * 80 + TONE_MULAW[:160]
    assert recorder.duration_ms == 30


def test_stereo_has_the_caller_left_and_the_app_right() -> None:
    recorder = Recorder()
    recorder.add(TONE_MULAW[:160], b"")
    with wave.open(io.BytesIO(recorder.stereo_wav())) as file:
        assert (file.getnchannels(), file.getframerate(), file.getsampwidth()) == (2, 8000, 2)
        frames = file.readframes(160)
    left, right = frames[0::4] + frames[1::4], frames[2::4] + frames[3::4]
    assert left != right
    pcm = mulaw.decode(TONE_MULAW[:160])
    assert frames[:2] == pcm[:2] and frames[2:4] == b"\x00\x00"


def test_mono_wav_is_pcm_of_what_was_heard() -> None:
    recorder = Recorder()
    recorder.add(b"\xff" * 160, TONE_MULAW[:160])
    with wave.open(io.BytesIO(recorder.heard_wav())) as file:
        assert file.readframes(160) == mulaw.decode(TONE_MULAW[:160])
