"""The TwiML interpreter: Twilio's walk through a call's documents, verb by verb.

Twilio runs the TwiML a webhook answers one verb at a time
(https://www.twilio.com/docs/voice/twiml): ``<Say>``, ``<Play>`` and ``<Pause>`` take their
time; ``<Start><Stream>`` opens a one-way stream and goes straight on; ``<Stop><Stream>``
stops one; ``<Connect><Stream>`` opens the bidirectional stream and blocks until the app
closes it, then requests ``action`` or goes on
(https://www.twilio.com/docs/voice/twiml/stream, https://www.twilio.com/docs/voice/twiml/connect);
``<Redirect>`` replaces the document; ``<Hangup>``, or running out of verbs, ends the call. A
REST update replaces the document at any moment (:meth:`Interpreter.redirect`).

Every ``<Stream>`` is checked against Twilio's rules (:func:`mediastreams.twiml.check_stream`):
problems become findings with Twilio's code (31922, 31923, 31941) or, where Twilio has none,
code 0.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias
from urllib.parse import urljoin, urlsplit, urlunsplit

import numpy as np

from .. import twiml
from ..audio import mulaw, to_mulaw
from ..audio.frames import MULAW_SAMPLE_RATE, ms_to_bytes, silence
from ..diagnostics import Violation
from ..exceptions import AudioError, TwiMLError, WebhookFailed
from .line import Line
from .streams import TRACKS_BY_ATTRIBUTE, StreamPlan
from .webhook import NO_CODE, TwilioRequests

if TYPE_CHECKING:  # report.py imports rest.py, which imports this module
    from .report import CallReport

__all__ = ["Direct", "Fetch", "Inline", "Interpreter", "Source", "describe_verb"]

_SAY_MS_PER_WORD = 400  # about 150 words a minute, the pace of Twilio's voices
_MAX_REDIRECTS = 10  # documents in a row that take no time: a redirect loop


@dataclass(frozen=True)
class Fetch:
    """TwiML to request: the voice webhook (``answer``), a ``<Redirect>``, an ``action``, a
    REST update's ``Url``."""

    url: str
    method: str = "POST"
    answer: bool = False


@dataclass(frozen=True)
class Inline:
    """TwiML given as text (a REST update's ``Twiml``); relative URLs resolve against
    ``url``."""

    text: str
    url: str


@dataclass(frozen=True)
class Direct:
    """A bidirectional stream to open at once, as if by ``<Connect><Stream>`` (a call placed
    to a stream URL, or to an app's stream path)."""

    plan: StreamPlan


Source: TypeAlias = Fetch | Inline | Direct


@dataclass(frozen=True)
class _Document:
    verbs: tuple[twiml.Verb, ...]
    url: str


class Interpreter:
    """Runs a call's TwiML against its :class:`~mediastreams.emulator.line.Line`.

    Args:
        line: the call.
        requests: the HTTP requests to the app.
        report: where verbs, findings and notes go.
    """

    def __init__(self, line: Line, requests: TwilioRequests, report: CallReport) -> None:
        self.line = line
        self.requests = requests
        self.report = report
        self.document_url = ""
        """The URL of the document running now (REST TwiML resolves relative URLs on it)."""
        self._swap: asyncio.Future[Source] | None = None
        self._walk: asyncio.Task[None] | None = None
        self._after_end: Fetch | None = None
        self._stream_verbs = 0
        self._timed_verbs = 0
        self._app_closed = False

    async def run(self, source: Source) -> None:
        """Walk the TwiML from ``source`` until the call is to end (the line is told why)."""
        loop = asyncio.get_running_loop()
        while True:
            swap = self._swap = loop.create_future()
            walk = self._walk = asyncio.create_task(self._walk_from(source))
            try:
                await asyncio.wait({walk, swap}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not walk.done():
                    walk.cancel()
                    await asyncio.wait({walk})
            if not walk.cancelled() and walk.exception() is not None:
                raise walk.exception()  # type: ignore[misc]
            if not swap.done():
                return
            source = swap.result()

    def redirect(self, source: Source) -> bool:
        """Replace the running TwiML with ``source`` (a REST update); ``False`` once the call
        is ending."""
        if self._swap is None or self._swap.done() or self.line.end_requested.is_set():
            return False
        if self._walk is not None:
            self._walk.cancel()
        self._swap.set_result(source)
        return True

    async def after_call(self) -> None:
        """Request the ``<Connect action>`` the end of the call cut short.

        Twilio requests it with the call completed; what it answers is not run.
        """
        action, self._after_end = self._after_end, None
        if action is None:
            return
        try:
            text = await self.requests.twiml(
                action.url, action.method, status="completed", what="the <Connect action>"
            )
            verbs = ", ".join(describe_verb(v) for v in twiml.parse_twiml(text).verbs)
        except WebhookFailed as failed:
            self._finding(failed.violation)
            return
        except TwiMLError as error:
            self._finding(
                Violation(
                    12100,
                    kind="twiml-parse",
                    sender="app",
                    message=f"{action.url}: {error}",
                    hint="",
                )
            )
            return
        self.report.notes.append(
            f"the <Connect action> {action.url} answered: {verbs or 'nothing'} "
            "(not run: the call had ended)"
        )

    # --- documents -------------------------------------------------------------------------

    async def _walk_from(self, source: Source) -> None:
        in_a_row = 0
        while True:
            if isinstance(source, Direct):
                await self._connect(source.plan, None)
                self._ran_out()
                return
            document = await self._load(source)
            if document is None:  # Twilio plays an application error and hangs up
                self.line.request_end("twiml")
                return
            timed = self._timed_verbs
            following = await self._run(document)
            if following is None:
                return
            in_a_row = 0 if self._timed_verbs > timed else in_a_row + 1
            if in_a_row >= _MAX_REDIRECTS:
                self.report.notes.append(
                    f"stopped after {_MAX_REDIRECTS} documents in a row that took no time "
                    "(a <Redirect> loop)"
                )
                self.line.request_end("twiml")
                return
            source = following

    async def _load(self, source: Fetch | Inline) -> _Document | None:
        if isinstance(source, Inline):
            text, url = source.text, source.url
        else:
            try:
                if source.answer:
                    text = await self.requests.answer(source.url, source.method)
                else:
                    text = await self.requests.twiml(source.url, source.method)
            except WebhookFailed as failed:
                self.report.placed = self.report.placed and not source.answer
                self._finding(failed.violation)
                return None
            url = source.url
        try:
            verbs = twiml.parse_twiml(text).verbs
        except TwiMLError as error:
            self._finding(_violation(12100, "twiml-parse", f"{url}: {error}", ""))
            return None
        self.document_url = url
        return _Document(verbs, url)

    async def _run(self, document: _Document) -> Source | None:
        """Run a document's verbs; what to run next, or ``None`` when the call is to end."""
        verbs = document.verbs
        for index, verb in enumerate(verbs):
            self.report.twiml_verbs.append(describe_verb(verb))
            self._app_closed = False
            match verb:
                case twiml.Say():
                    await self._say(verb)
                case twiml.Pause():
                    length = verb.length_seconds if verb.length_seconds is not None else 1
                    await self._hear(silence(1000 * length))
                case twiml.Play():
                    await self._play(verb, document.url)
                case twiml.Start():
                    self._start(verb, document.url)
                case twiml.Stop():
                    await self._stop(verb)
                case twiml.Connect():
                    action = await self._connect_verb(verb, document.url, verbs[index + 1 :])
                    if action is not None:
                        return action
                case twiml.Redirect():
                    return Fetch(urljoin(document.url, verb.url), verb.method or "POST")
                case twiml.Hangup():
                    if not self._stream_verbs:
                        self.report.notes.append("<Hangup> ended the call before any stream")
                    self.line.request_end("twiml")
                    return None
                case _:
                    self.report.notes.append(f"{describe_verb(verb)} is not emulated; skipped")
        self._ran_out()
        return None

    def _ran_out(self) -> None:
        # https://www.twilio.com/docs/voice/twiml/stream: with no next verb, the call ends.
        if not self._stream_verbs:
            self._finding(
                _violation(
                    NO_CODE,
                    "no-stream",
                    "the TwiML opens no <Connect><Stream>: the call ends without a Media Stream",
                    'Answer with <Response><Connect><Stream url="wss://..."/></Connect>'
                    "</Response>.",
                )
            )
        self.line.request_end("app" if self._app_closed else "twiml")

    # --- verbs that take time --------------------------------------------------------------

    async def _hear(self, audio: bytes) -> None:
        self._timed_verbs += 1
        await self.line.play(audio)

    async def _say(self, verb: twiml.Say) -> None:
        loops = _loops(verb.loop, "<Say>", self.report)
        duration_ms = max(1, len(verb.text.split())) * _SAY_MS_PER_WORD * loops
        self.report.notes.append(
            f"<Say> {verb.text[:40]!r}: about {duration_ms / 1000:.1f} s, a quiet tone in the "
            "recording (no speech synthesis)"
        )
        await self._hear(_tone(duration_ms))

    async def _play(self, verb: twiml.Play, url: str) -> None:
        if not verb.url:
            self.report.notes.append("<Play> without a URL (digits?) is not emulated; skipped")
            return
        source = urljoin(url, verb.url)
        try:
            audio = to_mulaw(await self.requests.audio(source))
        except WebhookFailed as failed:
            self.report.notes.append(
                f"<Play> {source}: cannot play ({failed.violation.message}); skipped"
            )
            return
        except AudioError as error:
            self.report.notes.append(f"<Play> {source}: cannot play ({error}); skipped")
            return
        await self._hear(audio * _loops(verb.loop, "<Play>", self.report))

    # --- streams ---------------------------------------------------------------------------

    def _start(self, verb: twiml.Start, url: str) -> None:
        self._stream_verbs += 1
        if verb.stream is None:
            self.report.notes.append(f"{_nouns('<Start>', verb.others)} is not emulated; skipped")
            return
        plan = self._plan(verb.stream, "Start", url)
        if plan is not None:
            # https://www.twilio.com/docs/voice/twiml/stream: "While Twilio is setting up the
            # Media Stream, it immediately continues with the next TwiML instruction."
            self.line.start_stream(plan)

    async def _stop(self, verb: twiml.Stop) -> None:
        if verb.stream is None:
            self.report.notes.append(f"{_nouns('<Stop>', verb.others)} is not emulated; skipped")
            return
        for problem in twiml.check_stream(verb.stream, "Stop"):
            self._finding(_violation(NO_CODE, "stream-twiml", problem.message, problem.hint))
        name = verb.stream.name
        if name and self.line.stop_stream(name, "stop") is None:
            self.report.notes.append(
                f"<Stop><Stream name={name!r}>: no one-way stream of that name is running; "
                "nothing stopped"
            )

    async def _connect_verb(
        self, verb: twiml.Connect, url: str, after: tuple[twiml.Verb, ...]
    ) -> Fetch | None:
        if verb.stream is None:
            self.report.notes.append(f"{_nouns('<Connect>', verb.others)} is not emulated; skipped")
            return None
        # https://www.twilio.com/docs/voice/twiml/connect#action: when <Connect> ends, Twilio
        # requests the action URL for the TwiML that continues the call.
        action = Fetch(urljoin(url, verb.action), verb.method or "POST") if verb.action else None
        if action is None and after:
            self.report.notes.append(
                "when the app closes the socket, the call goes on with "
                + ", ".join(describe_verb(v) for v in after)
                + ": closing the socket does not hang up"
            )
        plan = self._plan(verb.stream, "Connect", url)
        if plan is None:
            self._stream_verbs += 1
            return action
        await self._connect(plan, action)
        return action

    async def _connect(self, plan: StreamPlan, action: Fetch | None) -> None:
        self._stream_verbs += 1
        self._timed_verbs += 1
        try:
            leg = await self.line.connect_stream(plan)
            if leg is not None:
                await leg.ended.wait()
                self._app_closed = leg.summary.ended_by == "app"
        except asyncio.CancelledError:
            if action is not None and self.line.end_requested.is_set():
                self._after_end = action
            raise

    def _plan(self, stream: twiml.Stream, verb: twiml.StreamVerb, url: str) -> StreamPlan | None:
        """The stream to open, or ``None`` when Twilio would not open it (reported)."""
        if stream.url is not None and twiml.is_relative_url(stream.url):
            resolved = twiml.resolve_stream_url(stream.url, url)
            self.report.notes.append(
                f"<Stream url={stream.url!r}> is relative: it was resolved against {url} as "
                f"{resolved} (Twilio does not document how it maps https to wss)"
            )
            stream = dataclasses.replace(stream, url=resolved)
        fatal = False
        for problem in twiml.check_stream(stream, verb, allow_insecure_loopback=True):
            code = problem.code or NO_CODE
            self._finding(_violation(code, _kind(problem), problem.message, problem.hint, "Stream"))
            fatal = fatal or code in (31922, 31923, 31941)
        if fatal:
            return None
        if stream.url is None:
            self.report.notes.append(
                f"<{verb}><Stream> without url (a Stream Connector) is not emulated; skipped"
            )
            return None
        parts = urlsplit(stream.url)
        if parts.scheme == "ws":
            self.report.notes.append(
                f"ws:// accepted for a local run ({parts.hostname}); Twilio itself connects to "
                "wss:// only (31922)"
            )
        callback = stream.status_callback
        return StreamPlan(
            # https://www.twilio.com/docs/voice/twiml/stream#attributes-url: the query is
            # stripped.
            urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", "")),
            {p.name: p.value for p in stream.parameters},
            bidirectional=verb == "Connect",
            name=stream.name,
            tracks=TRACKS_BY_ATTRIBUTE[stream.track or "inbound_track"],
            status_callback=urljoin(url, callback) if callback else None,
            status_callback_method=stream.status_callback_method or "POST",
        )

    def _finding(self, violation: Violation) -> None:
        self.report.tally.found(violation)


def describe_verb(verb: twiml.Verb) -> str:
    """A verb as the report names it: ``<Say>``, ``<Pause length=2>``, ``<Dial>``."""
    if isinstance(verb, twiml.UnknownVerb):
        return f"<{verb.name}>"
    if isinstance(verb, twiml.Pause):
        return f"<Pause length={verb.length_seconds if verb.length_seconds is not None else 1}>"
    return f"<{type(verb).__name__}>"


def _nouns(verb: str, others: tuple[twiml.UnknownVerb, ...]) -> str:
    return verb + "".join(f"<{other.name}>" for other in others)


def _loops(loop: int | None, verb: str, report: CallReport) -> int:
    if loop == 0:
        report.notes.append(f"{verb} loop=0 (until the call ends) is played once here")
    return loop or 1


def _kind(problem: twiml.TwiMLProblem) -> str:
    text = problem.message
    if problem.code == 31922:
        return "stream-url-scheme"
    if problem.code == 31923:
        return "stream-url-malformed"
    if problem.code == 31941:
        return "stream-track"
    if "query string" in text:
        return "stream-url-query"
    if "<Parameter" in text:
        return "stream-parameter"
    return "stream-twiml"


def _violation(code: int, kind: str, message: str, hint: str, path: str | None = None) -> Violation:
    return Violation(code, kind=kind, sender="app", message=message, hint=hint, path=path)


def _tone(duration_ms: int) -> bytes:
    n_samples = ms_to_bytes(duration_ms)  # one byte a sample
    t = np.arange(n_samples) / MULAW_SAMPLE_RATE
    pcm = (2000 * np.sin(2 * math.pi * 440 * t)).astype("<i2")
    return mulaw.encode(pcm.tobytes())
