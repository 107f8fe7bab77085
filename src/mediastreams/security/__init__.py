"""Who is calling: ``X-Twilio-Signature``, the public URL it was computed over, stream tokens.

Twilio signs every webhook and the Media Streams WebSocket upgrade with
base64(HMAC-SHA1(auth token, URL + each POST parameter's name and value, sorted by name)).
The URL is the one *Twilio* requested, so behind a proxy or a tunnel it has to be rebuilt:
:class:`PublicURL` and :func:`public_url_for` do that, from a configured base URL or from
the request's forwarded headers. A signature covers only the URL of the upgrade, so it is
the same for every call; :class:`StreamTokens` adds one token per call, minted when the
webhook is answered (a replayed webhook gets the same pending token or none) and burned when
the stream starts. :func:`loggable` escapes what a peer sent before it goes in a log line.

The package's seams, one module each: ``signatures`` (computing and checking
``X-Twilio-Signature``), ``public_url`` (the URL Twilio requested), ``tokens`` (one-time
stream tokens and the rules of a token store) and ``escapes`` (log lines). Every public name
is importable from here. Nothing here imports a web framework, and no token or signature ever
goes into an exception message.

Reference: https://www.twilio.com/docs/usage/webhooks/webhooks-security and
https://www.twilio.com/docs/voice/media-streams (validate the upgrade's signature).
"""

from __future__ import annotations

from .escapes import loggable
from .public_url import PublicURL, public_url_for
from .signatures import (
    SIGNATURE_HEADER,
    FormParams,
    check_upgrade_signature,
    check_webhook_signature,
    compute_signature,
    validate_signature,
)
from .tokens import StreamTokens, TokenStore

__all__ = [
    "SIGNATURE_HEADER",
    "FormParams",
    "PublicURL",
    "StreamTokens",
    "TokenStore",
    "check_upgrade_signature",
    "check_webhook_signature",
    "compute_signature",
    "loggable",
    "public_url_for",
    "validate_signature",
]
