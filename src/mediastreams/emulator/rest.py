"""A local stand-in for the parts of Twilio's REST API that apps use on a live call.

Apps end or redirect a live call, and start or stop one-way streams, over Twilio's REST API:
``POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`` with ``Status=completed``,
``Twiml=`` or ``Url=`` (https://www.twilio.com/docs/voice/api/call-resource#update-a-call-resource),
and ``POST .../Calls/{CallSid}/Streams.json`` / ``.../Streams/{Sid or name}.json`` with
``Status=stopped`` (https://www.twilio.com/docs/voice/api/stream-resource). During an emulated
call, :class:`RestServer` answers those requests on 127.0.0.1, for that call only, in the JSON
shape of Twilio's Call and Stream resources (as twilio-python, generated from twilio/twilio-oai,
reads them). Requests are checked as Twilio checks them: HTTP basic auth with the account SID
and the auth token (401, code 20003, otherwise); another account or call is 404 (20404).

Point the ``twilio`` library at it with ``client.api.base_url = server.url``, and pipecat's
``TwilioFrameSerializer`` with ``base_url=server.url`` (see ``docs/emulator.md``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from .. import twiml
from ..diagnostics import Violation
from .interpreter import Fetch, Inline, Interpreter, Source
from .jsonhttp import JSONServer, Request
from .line import Line
from .streams import TRACKS_BY_ATTRIBUTE, StreamPlan, StreamSummary
from .webhook import NO_CODE

__all__ = ["RestRequest", "RestServer"]

_API = r"/2010-04-01/Accounts/(?P<account>[^/]+)/Calls/(?P<call>[^/]+)"
_CALL = re.compile(_API + r"\.json")
_STREAMS = re.compile(_API + r"/Streams\.json")
_STREAM = re.compile(_API + r"/Streams/(?P<stream>[^/]+)\.json")
_MAX_PARAMETERS = 99  # Parameter1.Name ... Parameter99.Name (the Stream resource)
_SUBRESOURCES = (
    "Notifications",
    "Recordings",
    "Payments",
    "Events",
    "Siprec",
    "Streams",
    "Transcriptions",
    "UserDefinedMessageSubscriptions",
    "UserDefinedMessages",
)


@dataclass(frozen=True)
class RestRequest:
    """One request the app made to the stand-in, as the report shows it.

    Attributes:
        at_ms: the call's time (milliseconds since its first ``start``; 0 before).
        method, path: the request line.
        params: the form (or query) parameters; ``ParameterN.Value`` values are hidden.
        status: the HTTP status answered.
        code: Twilio's error code answered, if it was an error.
    """

    at_ms: float
    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    status: int = 200
    code: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, as in the report's ``rest.requests``."""
        return {
            "at_ms": round(self.at_ms, 1),
            "method": self.method,
            "path": self.path,
            "params": self.params,
            "status": self.status,
            "code": self.code,
        }


class RestServer:
    """Twilio's REST call control for one emulated call, on 127.0.0.1.

    Args:
        line: the call.
        interpreter: its TwiML interpreter (a ``Twiml``/``Url`` update replaces the TwiML).
        parameters: the call's parameters (``AccountSid``, ``CallSid``, ``From``, ``To``...).
        auth_token: the password of HTTP basic auth (the user name is the account SID).
        port: where to listen (0: any free port; see :attr:`url`).
    """

    def __init__(
        self,
        line: Line,
        interpreter: Interpreter,
        parameters: dict[str, str],
        *,
        auth_token: str,
        port: int = 0,
    ) -> None:
        self.line = line
        self.interpreter = interpreter
        self.parameters = parameters
        self.requests: list[RestRequest] = []
        self._account_sid = parameters["AccountSid"]
        self._call_sid = parameters["CallSid"]
        self._auth_token = auth_token
        self._http = JSONServer(
            self._handle,
            port=port,
            what="the REST stand-in",
            port_option="--rest-port, rest_port=",
            headers={HTTPStatus.UNAUTHORIZED: ['WWW-Authenticate: Basic realm="Twilio API"']},
        )
        self._created = datetime.now(UTC)
        self._ended: datetime | None = None

    @property
    def url(self) -> str:
        """The base URL apps use instead of ``https://api.twilio.com``."""
        return self._http.url

    async def start(self) -> None:
        """Listen on 127.0.0.1.

        Raises:
            EmulatorError: the port cannot be used.
        """
        await self._http.start()

    async def close(self) -> None:
        """Stop listening and close every connection."""
        await self._http.close()

    async def _handle(self, request: Request) -> tuple[HTTPStatus, dict[str, Any]]:
        path, _, query = request.target.partition("?")
        form = request.body.decode("utf-8", "replace") if request.method == "POST" else query
        params = dict(parse_qsl(form, keep_blank_values=True))
        status, answer = await self._answer(
            request.method, path, request.headers.get("authorization"), params
        )
        self.requests.append(
            RestRequest(
                self.line.call_ms(),
                request.method,
                path,
                _without_secrets(params),
                int(status),
                answer.get("code") if status >= 400 else None,
            )
        )
        return status, answer

    # --- the resources ---------------------------------------------------------------------

    async def _answer(
        self, method: str, path: str, authorization: str | None, params: dict[str, str]
    ) -> tuple[HTTPStatus, dict[str, Any]]:
        if not self._authorized(authorization):
            return _error(
                HTTPStatus.UNAUTHORIZED,
                20003,
                "Authenticate",
                detail="Your AccountSid or AuthToken was incorrect.",
            )
        for pattern, handler in (
            (_CALL, self._call),
            (_STREAMS, self._streams),
            (_STREAM, self._stream),
        ):
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if (match["account"], match["call"]) != (self._account_sid, self._call_sid):
                break
            return await handler(method, params, match)
        return _error(HTTPStatus.NOT_FOUND, 20404, f"The requested resource {path} was not found")

    def _authorized(self, authorization: str | None) -> bool:
        # https://www.twilio.com/docs/usage/requests-to-twilio: HTTP basic auth, the account
        # SID as user name and the auth token as password.
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, _, password = decoded.partition(":")
        return hmac.compare_digest(user.encode(), self._account_sid.encode()) and (
            hmac.compare_digest(password.encode(), self._auth_token.encode())
        )

    async def _call(
        self, method: str, params: dict[str, str], _: re.Match[str]
    ) -> tuple[HTTPStatus, dict[str, Any]]:
        if method == "GET":
            return HTTPStatus.OK, self._call_resource()
        if method != "POST":
            return _not_allowed(method)
        status = params.get("Status")
        if status is not None and status not in ("completed", "canceled"):
            return _error(
                HTTPStatus.BAD_REQUEST,
                20001,
                f"Invalid value {status!r} for Status: use completed or canceled",
            )
        source = self._redirect_source(params)
        if isinstance(source, tuple):
            return source
        live = not self.line.end_requested.is_set()
        if status == "completed":
            # The call ends as Twilio ends it: every stream gets stop, then its socket closes.
            if live:
                self._ended = datetime.now(UTC)
                self.line.request_end("rest")
            return HTTPStatus.OK, self._call_resource()
        # Status=canceled only cancels a call still queued or ringing; this one is answered.
        if source is not None:
            if not (live and self.interpreter.redirect(source)):
                return _error(
                    HTTPStatus.BAD_REQUEST, 21220, "Call is not in-progress. Cannot redirect."
                )
            # https://www.twilio.com/docs/voice/twiml/stream: redirecting the call ends the
            # bidirectional stream; one-way streams go on (see docs/emulator.md).
            self.line.stop_talking("redirect")
        return HTTPStatus.OK, self._call_resource()

    def _redirect_source(
        self, params: dict[str, str]
    ) -> Source | tuple[HTTPStatus, dict[str, Any]] | None:
        if "Twiml" in params:
            return Inline(params["Twiml"], self.interpreter.document_url)
        url = params.get("Url")
        if url is None:
            return None
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            return _error(HTTPStatus.BAD_REQUEST, 21205, f"Url is not a valid URL: {url}")
        method = params.get("Method", "POST").upper()
        if method not in ("GET", "POST"):
            return _error(HTTPStatus.BAD_REQUEST, 20001, f"Invalid value {method!r} for Method")
        return Fetch(url, method)

    async def _streams(
        self, method: str, params: dict[str, str], _: re.Match[str]
    ) -> tuple[HTTPStatus, dict[str, Any]]:
        if method != "POST":
            return _not_allowed(method)
        plan = self._plan(params)
        if isinstance(plan, tuple):
            return plan
        if self.line.end_requested.is_set():
            return _error(HTTPStatus.BAD_REQUEST, 21220, "Call is not in-progress.")
        summary = self.line.start_stream(plan)
        if summary is None:  # refused (a name in use, too many tracks): reported by the line
            summary = self.line.streams[-1]
        return HTTPStatus.CREATED, self._stream_resource(summary)

    def _plan(self, params: dict[str, str]) -> StreamPlan | tuple[HTTPStatus, dict[str, Any]]:
        url = params.get("Url")
        if not url:
            return _error(
                HTTPStatus.BAD_REQUEST, 20001, "Missing required parameter Url in the post body"
            )
        track = params.get("Track", "inbound_track")
        if track not in TRACKS_BY_ATTRIBUTE:
            return _error(HTTPStatus.BAD_REQUEST, 20001, f"Invalid value {track!r} for Track")
        resolved = twiml.resolve_stream_url(url, self.interpreter.document_url)
        problems = twiml.check_stream_url(resolved, allow_insecure_loopback=True)
        for problem in problems:
            self.line.report.tally.found(
                Violation(
                    problem.code or NO_CODE,
                    kind="rest-stream-url",
                    sender="app",
                    message=problem.message,
                    hint=problem.hint,
                )
            )
        refused = next((p for p in problems if p.code is not None), None)
        if refused is not None:
            return _error(HTTPStatus.BAD_REQUEST, refused.code or 0, refused.message)
        parts = urlsplit(resolved)
        parameters = {
            params[f"Parameter{n}.Name"]: params.get(f"Parameter{n}.Value", "")
            for n in range(1, _MAX_PARAMETERS + 1)
            if params.get(f"Parameter{n}.Name")
        }
        return StreamPlan(
            urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", "")),
            parameters,
            bidirectional=False,
            name=params.get("Name") or None,
            tracks=TRACKS_BY_ATTRIBUTE[track],
            status_callback=params.get("StatusCallback") or None,
            status_callback_method=params.get("StatusCallbackMethod", "POST").upper(),
        )

    async def _stream(
        self, method: str, params: dict[str, str], match: re.Match[str]
    ) -> tuple[HTTPStatus, dict[str, Any]]:
        if method != "POST":
            return _not_allowed(method)
        if params.get("Status") != "stopped":
            return _error(
                HTTPStatus.BAD_REQUEST,
                20001,
                f"Invalid value {params.get('Status')!r} for Status: use stopped",
            )
        key = match["stream"]
        summary = self.line.stop_stream(key, "rest")
        if summary is not None:  # it stops in the background; the answer says so already
            return HTTPStatus.OK, self._stream_resource(summary, stopped=True)
        # Stopped already (answered as it is), or never a one-way stream of this call.
        summary = next(
            (
                s
                for s in reversed(self.line.streams)
                if key in (s.stream_sid, s.name) and not s.bidirectional
            ),
            None,
        )
        if summary is None:
            return _error(
                HTTPStatus.NOT_FOUND,
                20404,
                f"The requested resource {match.group(0)} was not found",
            )
        return HTTPStatus.OK, self._stream_resource(summary)

    def _call_resource(self) -> dict[str, Any]:
        # The fields of twilio/twilio-oai's api.v2010.account.call, as twilio-python's
        # CallInstance reads them.
        account, call = self._account_sid, self._call_sid
        base = f"/2010-04-01/Accounts/{account}/Calls/{call}"
        ended = self.line.end_requested.is_set()
        end_time = self._ended or (datetime.now(UTC) if ended else None)
        answered = bool(self.interpreter.document_url) or self.line.t0 is not None
        return {
            "sid": call,
            "date_created": _rfc2822(self._created),
            "date_updated": _rfc2822(datetime.now(UTC)),
            "parent_call_sid": None,
            "account_sid": account,
            "to": self.parameters.get("To"),
            "to_formatted": self.parameters.get("To"),
            "from": self.parameters.get("From"),
            "from_formatted": self.parameters.get("From"),
            "phone_number_sid": None,
            "status": "completed" if ended else ("in-progress" if answered else "ringing"),
            "start_time": _rfc2822(self._created),
            "end_time": _rfc2822(end_time) if end_time else None,
            "duration": str(int((end_time - self._created).total_seconds())) if end_time else None,
            "price": None,
            "price_unit": "USD",
            "direction": "inbound",
            "answered_by": None,
            "api_version": "2010-04-01",
            "forwarded_from": None,
            "group_sid": None,
            "caller_name": None,
            "queue_time": "0",
            "trunk_sid": None,
            "uri": base + ".json",
            "subresource_uris": {_snake(name): f"{base}/{name}.json" for name in _SUBRESOURCES},
        }

    def _stream_resource(self, summary: StreamSummary, *, stopped: bool = False) -> dict[str, Any]:
        # The fields of https://www.twilio.com/docs/voice/api/stream-resource.
        base = f"/2010-04-01/Accounts/{self._account_sid}/Calls/{self._call_sid}"
        return {
            "sid": summary.stream_sid,
            "account_sid": self._account_sid,
            "call_sid": self._call_sid,
            "name": summary.name,
            "status": "in-progress" if summary.running and not stopped else "stopped",
            "date_updated": _rfc2822(datetime.now(UTC)),
            "uri": f"{base}/Streams/{summary.stream_sid}.json",
        }


def _error(
    status: HTTPStatus, code: int, message: str, *, detail: str | None = None
) -> tuple[HTTPStatus, dict[str, Any]]:
    # Twilio's error body: {"code", "message", "more_info", "status"} (and "detail" on 401).
    answer: dict[str, Any] = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status.value,
    }
    if detail is not None:
        answer["detail"] = detail
    return status, answer


def _not_allowed(method: str) -> tuple[HTTPStatus, dict[str, Any]]:
    return _error(HTTPStatus.METHOD_NOT_ALLOWED, 20004, f"Method {method} not allowed")


def _without_secrets(params: dict[str, str]) -> dict[str, str]:
    # Custom parameter values often carry tokens: the report keeps their names only.
    return {
        name: "(hidden)" if re.fullmatch(r"Parameter\d+\.Value", name) else value
        for name, value in params.items()
    }


def _rfc2822(moment: datetime) -> str:
    return format_datetime(moment)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
