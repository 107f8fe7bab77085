"""Audio file headers found where headerless mu-law should be.

Twilio plays a ``media`` payload as raw mu-law 8000 Hz
(https://www.twilio.com/docs/voice/media-streams/websocket-messages#send-a-media-message), so a
payload that starts with a WAV, MP3, Ogg or FLAC header was a file sent as audio: the caller
hears a click and noise.
"""

from __future__ import annotations

__all__ = ["container_format"]


def container_format(payload: bytes) -> str | None:
    """The file format whose header starts ``payload`` (``"WAV"``, ``"MP3"``...), or ``None``.

    Raw mu-law is headerless, so these signatures mean a file was sent as audio. MP3 frame
    sync (0xFFE) is also common in quiet mu-law (0xFF is silence), so an MP3 is recognised only
    by an ID3 tag or by two valid frame headers one frame apart.
    """
    head = payload[:12]
    if head[:4] == b"RIFF" and head[8:12] in (b"WAVE", b"RF64"):
        return "WAV"
    if head[:4] == b"RF64" and head[8:12] == b"WAVE":
        return "WAV"
    if head[:3] == b"ID3" and len(head) >= 4 and head[3] < 0x0A:
        return "MP3 (ID3)"
    if head[:4] == b"OggS":
        return "Ogg"
    if head[:4] == b"fLaC":
        return "FLAC"
    if _mp3_frames_at(payload):
        return "MP3"
    return None


_MP3_BITRATES_KBPS = {  # (MPEG-1?, layer) -> table by index; layer III and II cover real files
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mp3_frame_length(header: bytes) -> int | None:
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version = (header[1] >> 3) & 3
    layer = 4 - ((header[1] >> 1) & 3)
    bitrate_index = header[2] >> 4
    rate_index = (header[2] >> 2) & 3
    if version == 1 or layer not in (2, 3) or rate_index == 3 or bitrate_index in (0, 15):
        return None
    mpeg1 = version == 3
    bitrate = _MP3_BITRATES_KBPS[(mpeg1, layer)][bitrate_index] * 1000
    sample_rate = _MP3_RATES[version][rate_index]
    padding = (header[2] >> 1) & 1
    factor = 144 if (mpeg1 or layer == 2) else 72
    return factor * bitrate // sample_rate + padding


def _mp3_frames_at(payload: bytes) -> bool:
    length = _mp3_frame_length(payload[:4])
    if length is None:
        return False
    return _mp3_frame_length(payload[length : length + 4]) is not None
