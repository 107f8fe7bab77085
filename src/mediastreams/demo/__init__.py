"""The demo: a built-in conversation played against the emulator (``mediastreams demo``)."""

from .conversation import SpeechDetector, conversation, handler, prompt

__all__ = ["SpeechDetector", "conversation", "handler", "prompt"]
