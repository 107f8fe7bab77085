"""pytest plugin: place an emulated Twilio call against your ASGI app in one line.

Installed with the package (entry point ``pytest11``). The ``twilio_call`` fixture returns a
function that places an in-process call in virtual time and gives back its
:class:`~mediastreams.emulator.CallResult` (the report and the recording)::

    from mediastreams.emulator import Audio, WaitForQuiet

    def test_greeting(twilio_call):
        result = twilio_call("myapp.server:app", [WaitForQuiet(), Audio("tests/hello.wav")])
        result.raise_for_violations()  # fails with every mistake the app made, readably
        assert result.report.time_to_first_audio_ms < 500

Importing this module imports nothing else of mediastreams: the emulator loads on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .emulator import CallResult, Step

__all__ = ["twilio_call"]


@pytest.fixture
def twilio_call() -> Callable[..., CallResult]:
    """A function ``(app, steps=(), **options) -> CallResult`` that places a call.

    ``app`` is an ASGI app or ``"module:app"``; ``steps`` the caller's script; the options
    are those of :func:`mediastreams.emulator.place_call_async` (``webhook_path``,
    ``auth_token``, ``public_url``, ``parameters``, ``trace``...), plus ``clock``
    (``"virtual"`` by default). An app that checks ``X-Twilio-Signature`` against its public
    URL needs ``public_url`` to be that URL (``https://testserver`` otherwise).
    """

    def place(app: Any, steps: Sequence[Step] = (), **options: Any) -> CallResult:
        from .emulator import place_call

        options.setdefault("max_duration_s", 300.0)
        return place_call(app, steps, **options)

    return place
