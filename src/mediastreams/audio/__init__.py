"""Audio for Twilio Media Streams: anything in, headerless mu-law/8000 mono out, and back.

Twilio plays only raw G.711 mu-law at 8000 Hz, mono, with no file header, in 20 ms frames of
160 bytes; silence is ``0xFF``. This package turns any file, buffer, array or PCM stream into
exactly that, and inbound mu-law into PCM. Only the names in ``__all__`` are public.
"""

from __future__ import annotations

from ..containers import Container
from ..exceptions import (
    AudioError,
    CorruptedAudio,
    EmptyAudio,
    TruncatedAudio,
    UnknownAudioFormat,
    UnsupportedAudio,
)
from ..wireformat import SILENCE_BYTE
from . import mulaw
from .decode import DecodedAudio, decode_bytes, decode_file, sniff
from .frames import (
    FRAME_BYTES,
    FRAME_MS,
    MULAW_SAMPLE_RATE,
    FrameBuffer,
    bytes_to_ms,
    ms_to_bytes,
    pad_to_frame,
    silence,
    split_frames,
)
from .resample import Resampler, resample_int16
from .samples import MULAW_8K, AudioFormat, Encoding, to_mono_int16
from .source import (
    AudioSource,
    Conversion,
    MulawDecoder,
    MulawEncoder,
    Progress,
    convert,
    mulaw_to_pcm,
    stream_to_mulaw,
    to_mulaw,
)
from .wav import WavFile, parse_wav, read_wav_header, wav_bytes, write_wav

__all__ = [
    "FRAME_BYTES",
    "FRAME_MS",
    "MULAW_8K",
    "MULAW_SAMPLE_RATE",
    "SILENCE_BYTE",
    "AudioError",
    "AudioFormat",
    "AudioSource",
    "Container",
    "Conversion",
    "CorruptedAudio",
    "DecodedAudio",
    "EmptyAudio",
    "Encoding",
    "FrameBuffer",
    "MulawDecoder",
    "MulawEncoder",
    "Progress",
    "Resampler",
    "TruncatedAudio",
    "UnknownAudioFormat",
    "UnsupportedAudio",
    "WavFile",
    "bytes_to_ms",
    "convert",
    "decode_bytes",
    "decode_file",
    "ms_to_bytes",
    "mulaw",
    "mulaw_to_pcm",
    "pad_to_frame",
    "parse_wav",
    "read_wav_header",
    "resample_int16",
    "silence",
    "sniff",
    "split_frames",
    "stream_to_mulaw",
    "to_mono_int16",
    "to_mulaw",
    "wav_bytes",
    "write_wav",
]
