"""The TwiML leg of a call: the voice webhook, and the verbs Twilio runs before the stream.

Twilio answers an incoming call by POSTing the call's parameters to the number's voice URL,
signed with ``X-Twilio-Signature`` (https://www.twilio.com/docs/usage/webhooks/voice-webhooks,
https://www.twilio.com/docs/usage/webhooks/webhooks-security). It runs the TwiML it gets back
verb by verb: ``<Say>``, ``<Play>`` and ``<Pause>`` take time, ``<Redirect>`` fetches more
TwiML, and ``<Connect><Stream>`` opens the bidirectional stream and blocks until it closes
(https://www.twilio.com/docs/voice/twiml/stream).

Every ``<Stream>`` is checked against Twilio's rules (:func:`mediastreams.twiml.check_stream`):
problems become findings with Twilio's code (31922, 31923, 31941) or, where Twilio has none,
code 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
import numpy as np

from .. import twiml
from ..audio import SILENCE_BYTE, mulaw, to_mulaw
from ..diagnostics import Violation
from ..exceptions import AudioError, TwiMLError
from ..messages import new_sid
from ..security import compute_signature

__all__ = [
    "NO_CODE",
    "RoutedTransport",
    "StreamPlan",
    "TwiMLWalk",
    "WebhookFailed",
    "call_parameters",
    "describe_verb",
    "fetch_twiml",
    "walk_twiml",
]

NO_CODE = 0
"""The code of a finding for which Twilio has no error code (it fails or ignores silently)."""

WEBHOOK_USER_AGENT = "TwilioProxy/1.1"
_SAY_MS_PER_WORD = 400  # about 150 words a minute, the pace of Twilio's voices
_MAX_REDIRECTS = 10


class RoutedTransport(httpx.AsyncBaseTransport):
    """Sends requests for one public host to a local server instead, as a tunnel would.

    The request keeps its ``Host`` header and gains ``X-Forwarded-Proto`` (and
    ``X-Forwarded-Host``), so the server sees what it would behind ngrok; the signature was
    computed over the public URL, exactly as Twilio signs it.

    Args:
        public_host: the host name the TwiML and the webhook URL use.
        connect_to: ``(host, port)`` of the local server (plain HTTP).
    """

    def __init__(self, public_host: str, connect_to: tuple[str, int]) -> None:
        self._public_host = public_host
        self._connect_to = connect_to
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``, to the local server when it names the public host."""
        if request.url.host == self._public_host:
            request.headers["X-Forwarded-Proto"] = request.url.scheme
            request.headers["X-Forwarded-Host"] = request.headers["Host"]
            host, port = self._connect_to
            request.url = request.url.copy_with(scheme="http", host=host, port=port)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Close the connections."""
        await self._inner.aclose()


class WebhookFailed(Exception):
    """The webhook could not be fetched; ``violation`` says why (Twilio's 11200 family)."""

    def __init__(self, violation: Violation) -> None:
        super().__init__(violation.describe())
        self.violation = violation


def call_parameters(
    *,
    call_sid: str | None = None,
    account_sid: str | None = None,
    from_number: str = "+15005550006",
    to_number: str = "+15005550001",
) -> dict[str, str]:
    """The form parameters Twilio POSTs to the voice URL for an incoming call."""
    return {
        "AccountSid": account_sid or new_sid("AC"),
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid or new_sid("CA"),
        "CallStatus": "ringing",
        "Called": to_number,
        "Caller": from_number,
        "Direction": "inbound",
        "From": from_number,
        "To": to_number,
        "FromCountry": "US",
        "ToCountry": "US",
    }


@dataclass
class StreamPlan:
    """The stream Twilio would open.

    Attributes:
        url: the URL Twilio connects to (the ``<Stream url>`` without a query string).
        parameters: ``<Parameter>`` values, for ``start.customParameters``.
        bidirectional: ``<Connect>`` (``True``) or ``<Start>`` (``False``).
        name: the ``<Stream name>``.
        status_callback, status_callback_method: where Twilio reports ``stream-started``
            and ``stream-stopped``.
        action, action_method: the ``<Connect action>`` requested when the stream ends.
    """

    url: str
    parameters: dict[str, str]
    bidirectional: bool = True
    name: str | None = None
    status_callback: str | None = None
    status_callback_method: str = "POST"
    action: str | None = None
    action_method: str = "POST"


@dataclass
class TwiMLWalk:
    """What running the TwiML did before (and would do after) the stream."""

    stream: StreamPlan | None = None
    prelude: bytes = b""
    verbs: list[str] = field(default_factory=list)
    findings: list[Violation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    after_stream: list[str] = field(default_factory=list)


async def fetch_twiml(
    client: httpx.AsyncClient,
    url: str,
    params: Mapping[str, str],
    *,
    auth_token: str | None = None,
    method: str = "POST",
) -> str:
    """Request TwiML as Twilio does: a signed form POST (or a GET with the query).

    Raises:
        WebhookFailed: no answer, or not a 2xx answer (Twilio's 11200).
    """
    headers = {"User-Agent": WEBHOOK_USER_AGENT}
    try:
        if method.upper() == "GET":
            request = client.build_request("GET", url, params=dict(params))
            signed_url = str(request.url)
            if auth_token:
                request.headers["X-Twilio-Signature"] = compute_signature(auth_token, signed_url)
            request.headers.update(headers)
            response = await client.send(request)
        else:
            if auth_token:
                headers["X-Twilio-Signature"] = compute_signature(auth_token, url, params)
            response = await client.post(url, data=dict(params), headers=headers)
    except httpx.HTTPError as error:
        raise WebhookFailed(
            Violation(
                11200,
                "webhook-unreachable",
                "app",
                f"cannot reach the voice webhook {url}: {error or type(error).__name__}",
                "Is the server running, and is this its URL?",
            )
        ) from None
    except Exception as error:  # an in-process app raised: Twilio would get an HTTP 500
        raise WebhookFailed(
            Violation(
                11200,
                "webhook-error",
                "app",
                f"the voice webhook {url} raised {type(error).__name__}: {error}",
                "Fix the handler; Twilio gets an HTTP 500 and plays an application error.",
            )
        ) from error
    if not 200 <= response.status_code < 300:
        raise WebhookFailed(
            Violation(
                11200,
                "webhook-status",
                "app",
                f"the voice webhook {url} answered HTTP {response.status_code}",
                "Answer with 200 and a TwiML document. A 403 often means the signature check "
                "failed: check the auth token and the public URL it rebuilds.",
            )
        )
    return response.text


async def walk_twiml(
    client: httpx.AsyncClient,
    document: str,
    *,
    url: str,
    params: Mapping[str, str],
    auth_token: str | None = None,
) -> TwiMLWalk:
    """Run a TwiML document up to its ``<Connect><Stream>`` (or its end) as Twilio would."""
    walk = TwiMLWalk()
    for _ in range(_MAX_REDIRECTS):
        try:
            verbs = twiml.parse_twiml(document).verbs
        except TwiMLError as error:
            walk.findings.append(_finding(12100, "twiml-parse", str(error), ""))
            return walk
        redirect = await _run_verbs(client, verbs, walk, url)
        if redirect is None:
            return walk
        url = urljoin(url, redirect.url)
        document = await fetch_twiml(
            client, url, params, auth_token=auth_token, method=redirect.method or "POST"
        )
    walk.notes.append(f"stopped after {_MAX_REDIRECTS} <Redirect>s")
    return walk


async def _run_verbs(
    client: httpx.AsyncClient, verbs: tuple[twiml.Verb, ...], walk: TwiMLWalk, url: str
) -> twiml.Redirect | None:
    for index, verb in enumerate(verbs):
        walk.verbs.append(describe_verb(verb))
        if isinstance(verb, twiml.Redirect):
            return verb
        if isinstance(verb, twiml.Hangup):
            walk.notes.append("<Hangup> ended the call before any stream")
            return None
        if isinstance(verb, twiml.Connect | twiml.Start) and verb.stream is not None:
            # A stream Twilio refuses (31922, 31923, 31941) fails the call here.
            if _plan_stream(verb, walk):
                walk.after_stream = [describe_verb(v) for v in verbs[index + 1 :]]
                _note_after(verb, walk)
            return None
        await _run_simple(client, verb, walk, url)
    if walk.stream is None:
        walk.findings.append(
            _finding(
                NO_CODE,
                "no-stream",
                "the TwiML opens no <Connect><Stream>: the call ends without a Media Stream",
                'Answer with <Response><Connect><Stream url="wss://..."/></Connect></Response>.',
            )
        )
    return None


def _plan_stream(verb: twiml.Connect | twiml.Start, walk: TwiMLWalk) -> bool:
    stream = verb.stream
    assert stream is not None
    kind: twiml.StreamVerb = "Connect" if isinstance(verb, twiml.Connect) else "Start"
    problems = twiml.check_stream(stream, kind, allow_insecure_loopback=True)
    fatal = False
    for problem in problems:
        walk.findings.append(
            _finding(
                problem.code or NO_CODE, _kind(problem), problem.message, problem.hint, "Stream"
            )
        )
        fatal = fatal or problem.code in (31922, 31923, 31941)
    if kind == "Start":
        walk.findings.append(
            _finding(
                NO_CODE,
                "start-stream",
                "<Start><Stream> opens a one-way stream: the app's media, marks and clears "
                "are ignored, and Twilio goes straight on to the next verb",
                "For a stream the app talks back on, use <Connect><Stream>.",
                "Start",
            )
        )
    if fatal or stream.url is None:
        return False
    parts = urlsplit(stream.url)
    if parts.scheme == "ws":
        walk.notes.append(
            f"ws:// accepted for a local run ({parts.hostname}); Twilio itself connects to "
            "wss:// only (31922)"
        )
    # https://www.twilio.com/docs/voice/twiml/stream#attributes-url: the query is stripped.
    url = urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", ""))
    parameters = {p.name: p.value for p in stream.parameters}
    connect = verb if isinstance(verb, twiml.Connect) else None
    walk.stream = StreamPlan(
        url,
        parameters,
        bidirectional=connect is not None,
        name=stream.name,
        status_callback=stream.status_callback,
        status_callback_method=stream.status_callback_method or "POST",
        action=connect.action if connect is not None else None,
        action_method=(connect.method if connect is not None else None) or "POST",
    )
    return True


def _note_after(verb: twiml.Connect | twiml.Start, walk: TwiMLWalk) -> None:
    # With an action, what follows comes from the action's TwiML (the runner requests it).
    if isinstance(verb, twiml.Connect) and not verb.action and walk.after_stream:
        walk.notes.append(
            "when the app closes the socket, the call goes on with "
            + ", ".join(walk.after_stream)
            + ": closing the socket does not hang up"
        )


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


async def _run_simple(
    client: httpx.AsyncClient, verb: twiml.Verb, walk: TwiMLWalk, url: str
) -> None:
    if isinstance(verb, twiml.Pause):
        walk.prelude += _silence(
            1000 * (verb.length_seconds if verb.length_seconds is not None else 1)
        )
    elif isinstance(verb, twiml.Say):
        loops = verb.loop if verb.loop else 1
        words = max(1, len(verb.text.split()))
        duration_ms = words * _SAY_MS_PER_WORD * loops
        walk.prelude += _tone(duration_ms)
        walk.notes.append(
            f"<Say> {verb.text[:40]!r}: about {duration_ms / 1000:.1f} s, a quiet tone in the "
            "recording (no speech synthesis)"
        )
    elif isinstance(verb, twiml.Play):
        await _play(client, verb, walk, url)
    elif isinstance(verb, twiml.Stop):
        walk.notes.append("<Stop><Stream> skipped: no unidirectional stream is running")
    else:
        walk.notes.append(f"{describe_verb(verb)} is not emulated; skipped")


async def _play(client: httpx.AsyncClient, verb: twiml.Play, walk: TwiMLWalk, url: str) -> None:
    source = urljoin(url, verb.url)
    try:
        response = await client.get(source)
        response.raise_for_status()
        audio = to_mulaw(response.content)
    except (httpx.HTTPError, AudioError) as error:
        walk.notes.append(f"<Play> {source}: cannot play ({error}); skipped")
        return
    except Exception as error:  # an in-process app's route raised
        walk.notes.append(f"<Play> {source}: the app raised {type(error).__name__}: {error}")
        return
    walk.prelude += audio * (verb.loop if verb.loop else 1)


def _silence(duration_ms: int) -> bytes:
    return bytes([SILENCE_BYTE]) * (duration_ms * 8)


def _tone(duration_ms: int) -> bytes:
    n_samples = duration_ms * 8
    t = np.arange(n_samples) / 8000
    pcm = (2000 * np.sin(2 * math.pi * 440 * t)).astype("<i2")
    return mulaw.encode(pcm.tobytes())


def describe_verb(verb: twiml.Verb) -> str:
    """A verb as the report names it: ``<Say>``, ``<Pause length=2>``, ``<Dial>``."""
    if isinstance(verb, twiml.UnknownVerb):
        return f"<{verb.name}>"
    if isinstance(verb, twiml.Pause):
        return f"<Pause length={verb.length_seconds if verb.length_seconds is not None else 1}>"
    return f"<{type(verb).__name__}>"


def _finding(code: int, kind: str, message: str, hint: str, path: str | None = None) -> Violation:
    return Violation(code, kind, "app", message, hint, path=path)
