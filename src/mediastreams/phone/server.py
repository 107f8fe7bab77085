"""The page's server, on 127.0.0.1 only: the page, its scripts, the call's files, ``/ws``.

Only this machine's browser is served. Requests must name ``127.0.0.1`` or ``localhost`` as
their host (a page of another site that rebinds its DNS name to 127.0.0.1 is refused), and
the WebSocket's ``Origin`` must be this server (a page of another site open in the same
browser cannot place calls or hear them).
"""

from __future__ import annotations

import asyncio
import re
import socket
from importlib import resources

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from .session import CALL_FILES, PageSession, Phone

__all__ = ["LOCAL_HOSTS", "create_phone_app", "run_phone"]

LOCAL_HOSTS = ("127.0.0.1", "localhost")
"""The host names the page may be reached at."""

_POLICY_VIOLATION = 1008  # RFC 6455 §7.4.1
_CALL_FOLDER = re.compile(r"call-[1-9][0-9]*")
_NO_STORE = {"Cache-Control": "no-store"}


def create_phone_app(phone: Phone) -> Starlette:
    """The page's Starlette app: ``/``, ``/static/...``, ``/files/call-N/NAME``, ``/ws``."""

    async def index(request: Request) -> Response:
        page = resources.files(__package__).joinpath("static", "index.html").read_text("utf-8")
        return HTMLResponse(page, headers=_NO_STORE)

    async def download(request: Request) -> Response:
        folder, name = request.path_params["call"], request.path_params["name"]
        path = phone.out_dir / folder / name
        if not _CALL_FOLDER.fullmatch(folder) or name not in CALL_FILES or not path.is_file():
            return PlainTextResponse(f"no such file: {folder}/{name}", status_code=404)
        return FileResponse(path, filename=f"{folder}-{name}", headers=_NO_STORE)

    async def page_socket(websocket: WebSocket) -> None:
        origin = websocket.headers.get("origin")
        if origin != f"http://{websocket.headers.get('host')}":
            await websocket.close(code=_POLICY_VIOLATION, reason="only this server's page")
            return
        await websocket.accept()
        await PageSession(websocket, phone).run()

    static = StaticFiles(packages=[(__package__, "static")])
    return Starlette(
        routes=[
            Route("/", index),
            Mount("/static", static, name="static"),
            Route("/files/{call}/{name}", download),
            WebSocketRoute("/ws", page_socket),
        ],
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=list(LOCAL_HOSTS))],
    )


async def run_phone(phone: Phone, sock: socket.socket) -> None:
    """Serve the page on ``sock`` until cancelled (Ctrl-C under ``asyncio.run``).

    Cancelling hangs up the calls under way and returns once their reports and files are
    written and the server has stopped: the cancellation is taken as the way to stop, not
    passed on.
    """
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(
            create_phone_app(phone),
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws_max_size=1 << 20,
        )
    )
    # uvicorn's own signal handlers are not installed (its private _serve): Ctrl-C cancels
    # this task, which hangs up first and then stops the server.
    serving = asyncio.create_task(server._serve(sockets=[sock]))
    try:
        await asyncio.shield(serving)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        await phone.hang_up_all()
        server.should_exit = True
        await serving
