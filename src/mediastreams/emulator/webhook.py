"""The HTTP requests Twilio makes during a call: TwiML, audio for ``<Play>``, status events.

Twilio answers an incoming call by POSTing the call's parameters to the number's voice URL,
signed with ``X-Twilio-Signature`` (https://www.twilio.com/docs/usage/webhooks/voice-webhooks,
https://www.twilio.com/docs/usage/webhooks/webhooks-security). Later TwiML (a ``<Redirect>``,
a ``<Connect action>``, a REST update's ``Url``) is requested the same way with the call's
status by then, ``in-progress``; a ``<Stream statusCallback>`` gets signed
``stream-started``/``-stopped``/``-error`` events (https://www.twilio.com/docs/voice/twiml/stream).
A request that fails is Twilio's 11200.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import httpx

from ..diagnostics import Violation
from ..exceptions import WebhookFailed
from ..messages import new_sid
from ..security import compute_signature
from .streams import StreamPlan
from .transport import connect_to_hint, describe_target, public_url_hint

__all__ = [
    "NO_CODE",
    "WEBHOOK_USER_AGENT",
    "RoutedTransport",
    "StreamEvents",
    "TwilioRequests",
    "WebhookFailed",
    "call_parameters",
]

NO_CODE = 0
"""The code of a finding for which Twilio has no error code (it fails or ignores silently)."""

WEBHOOK_USER_AGENT = "TwilioProxy/1.1"


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


class TwilioRequests:
    """Every HTTP request Twilio makes to the app during one call.

    Args:
        client: the HTTP client (routed to a local server, or to an in-process app).
        parameters: the call's parameters (:func:`call_parameters`).
        auth_token: sign each request with ``X-Twilio-Signature``.
        connect_to: where a public host's requests really go, for error messages.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        parameters: Mapping[str, str],
        *,
        auth_token: str | None = None,
        connect_to: tuple[str, int] | None = None,
    ) -> None:
        self.client = client
        self.parameters = dict(parameters)
        self.auth_token = auth_token
        self.connect_to = connect_to

    async def answer(self, url: str, method: str = "POST") -> str:
        """The voice webhook: TwiML for a ringing call.

        Raises:
            WebhookFailed: no answer, or not a 2xx answer (11200).
        """
        return await self.twiml(url, method, status="ringing", what="the voice webhook")

    async def twiml(
        self, url: str, method: str, *, status: str = "in-progress", what: str = "TwiML URL"
    ) -> str:
        """More TwiML for the call (a ``<Redirect>``, an ``action``, a REST ``Url``).

        Args:
            url: the absolute URL.
            method: ``"GET"`` or ``"POST"``.
            status: the call's ``CallStatus`` now.
            what: how the URL is named in an error.

        Raises:
            WebhookFailed: no answer, or not a 2xx answer (11200).
        """
        parameters = {**self.parameters, "CallStatus": status}
        response = await self._send(url, parameters, method=method, what=what)
        return response.text

    async def status_event(self, url: str, method: str, parameters: Mapping[str, str]) -> None:
        """A ``statusCallback`` request; its answer is ignored, as Twilio ignores it.

        Raises:
            WebhookFailed: no answer, or not a 2xx answer (11200).
        """
        await self._send(url, parameters, method=method, what="the stream statusCallback")

    async def audio(self, url: str) -> bytes:
        """The file a ``<Play>`` names (a plain GET, as Twilio fetches media).

        Raises:
            WebhookFailed: no answer, or not a 2xx answer.
        """
        return (await self._send(url, {}, method="GET", what="<Play>", signed=False)).content

    async def _send(
        self,
        url: str,
        parameters: Mapping[str, str],
        *,
        method: str,
        what: str,
        signed: bool = True,
    ) -> httpx.Response:
        headers = {"User-Agent": WEBHOOK_USER_AGENT}
        token = self.auth_token if signed else None
        try:
            if method.upper() == "GET":
                request = self.client.build_request("GET", url, params=dict(parameters))
                if token:
                    signature = compute_signature(token, str(request.url))
                    request.headers["X-Twilio-Signature"] = signature
                request.headers.update(headers)
                response = await self.client.send(request)
            else:
                if token:
                    headers["X-Twilio-Signature"] = compute_signature(token, url, parameters)
                response = await self.client.post(url, data=dict(parameters), headers=headers)
        except httpx.HTTPError as error:
            raise WebhookFailed(
                Violation(
                    11200,
                    kind="webhook-unreachable",
                    sender="app",
                    message=f"cannot reach {what} {describe_target(url, self.connect_to)}: "
                    f"{error or type(error).__name__}",
                    hint="Is the server running, and is this its URL?"
                    + connect_to_hint(url, self.connect_to),
                )
            ) from None
        except Exception as error:  # an in-process app raised: Twilio would get an HTTP 500
            raise WebhookFailed(
                Violation(
                    11200,
                    kind="webhook-error",
                    sender="app",
                    message=f"{what} {url} raised {type(error).__name__}: {error}",
                    hint="Fix the handler; Twilio gets an HTTP 500 and plays an application error.",
                )
            ) from error
        if not 200 <= response.status_code < 300:
            raise WebhookFailed(
                Violation(
                    11200,
                    kind="webhook-status",
                    sender="app",
                    message=f"{what} {url} answered HTTP {response.status_code}",
                    hint="Answer with 200 and a TwiML document. A 403 often means the signature "
                    "check failed: check the auth token and the public URL it rebuilds."
                    + public_url_hint(url),
                )
            )
        return response


class StreamEvents:
    """The ``statusCallback`` requests of a call's streams, each stream's in order.

    https://www.twilio.com/docs/voice/twiml/stream#attributes-status-callback: the events
    carry ``AccountSid``, ``CallSid``, ``StreamSid``, ``StreamName`` (the SID when the stream
    has no name), ``StreamEvent``, ``StreamError`` (errors only) and ``Timestamp``. They go
    out in the background, as Twilio does not wait for them; a failed one is reported.

    Args:
        requests: the call's requests to the app.
        account_sid, call_sid: the call's SIDs.
        on_failure: told of each request that failed (11200).
    """

    def __init__(
        self,
        requests: TwilioRequests,
        account_sid: str,
        call_sid: str,
        *,
        on_failure: Callable[[Violation], None],
    ) -> None:
        self._requests = requests
        self._account_sid = account_sid
        self._call_sid = call_sid
        self._on_failure = on_failure
        self._last: dict[str, asyncio.Task[None]] = {}

    def send(self, plan: StreamPlan, event: str, error: Violation | None = None) -> None:
        """Send ``event`` for the stream of ``plan``, after its earlier events."""
        if plan.status_callback is None:
            return
        parameters = {
            "AccountSid": self._account_sid,
            "CallSid": self._call_sid,
            "StreamSid": plan.stream_sid,
            "StreamName": plan.name or plan.stream_sid,
            "StreamEvent": event,
            "Timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        if error is not None:
            parameters["StreamError"] = f"{error.code} {error.name}: {error.message}"
        previous = self._last.get(plan.stream_sid)
        self._last[plan.stream_sid] = asyncio.create_task(self._send(previous, plan, parameters))

    async def wait(self) -> None:
        """Until every event sent so far has been answered (or failed)."""
        if self._last:
            await asyncio.gather(*self._last.values())

    async def _send(
        self,
        previous: asyncio.Task[None] | None,
        plan: StreamPlan,
        parameters: dict[str, str],
    ) -> None:
        if previous is not None:
            await previous
        assert plan.status_callback is not None
        try:
            await self._requests.status_event(
                plan.status_callback, plan.status_callback_method, parameters
            )
        except WebhookFailed as failed:
            self._on_failure(failed.violation)
