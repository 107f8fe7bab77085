"""The public audio API: every name in ``mediastreams.audio.__all__`` resolves, once."""

import mediastreams.audio as audio
from mediastreams.exceptions import AudioError


def test_all_is_unique_and_resolvable() -> None:
    assert len(set(audio.__all__)) == len(audio.__all__)
    for name in audio.__all__:
        assert getattr(audio, name) is not None, name


def test_errors_are_audio_errors_and_value_errors() -> None:
    for name in ("CorruptedAudio", "EmptyAudio", "TruncatedAudio", "UnknownAudioFormat"):
        error = getattr(audio, name)
        assert issubclass(error, AudioError)
        assert issubclass(error, ValueError)
    assert issubclass(audio.UnsupportedAudio, ValueError)
