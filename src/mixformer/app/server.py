"""The Starlette application of ``mixformer app``: the page, its JSON API and the streamed frames.

Routes (all answers to bad input are ``{"error": "one line"}`` with a 4xx status, which the page
shows as a message):

* ``GET /`` and ``GET /static/{name}``: the page's own files, and nothing else: names are looked
  up in a fixed table read from the package at start-up, never joined to a path.
* ``GET /api/state?since=K&run=R``: :meth:`Session.snapshot` (status, progress, new results,
  the model and its weights).
* ``POST /api/upload?name=FILE``: the video as the raw request body (streamed to disk; refused
  over the size limit before and while it arrives).
* ``POST /api/demo``: the built-in demo clip.
* ``POST /api/track`` with ``{"boxes": [[x, y, w, h], ...]}``; ``POST /api/pause``,
  ``/api/resume``, ``/api/stop``; ``POST /api/options`` with ``{"attention": true}`` (and
  optionally ``"target": K``, the target whose attention map the page shows, from 0).
* ``GET /api/first-frame.jpg``, ``GET /api/frame/{run}/{index}.jpg[?attention=1&target=K]``:
  JPEG frames (with ``attention=1`` target K's attention picture where the run has one).
* ``GET /api/download/boxes.txt``, ``GET /api/download/tracked.mp4``: the last run's results.

POST requests must carry the ``X-Requested-With: mixformer`` header, which a page of another
site cannot send without a CORS preflight this server never grants, so such a page cannot drive
the local server; with ``allowed_hosts`` the ``Host`` header is checked too (DNS rebinding).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from mixformer.app.session import AppError, Session

log = logging.getLogger(__name__)

#: The page's files: the only names ``/`` and ``/static/`` serve.
STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
#: The header every POST must carry (see the module docstring).
CSRF_HEADER = ("x-requested-with", "mixformer")

_PAGE_HEADERS = {
    # Everything from this server only: nothing from a CDN can load even by mistake.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
_API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def load_static() -> dict[str, bytes]:
    """The contents of the page's files (``mixformer/app/static``), by name."""
    root = resources.files("mixformer.app") / "static"
    return {name: (root / name).read_bytes() for name in STATIC_FILES}


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=_API_HEADERS)


def _json(data: Any) -> JSONResponse:
    return JSONResponse(data, headers=_API_HEADERS)


def _int_param(request: Request, name: str, default: int | None) -> int | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise AppError(f"query parameter {name} must be an integer, got {value[:20]!r}") from exc


def create_app(session: Session, allowed_hosts: Sequence[str] | None = None) -> Starlette:
    """The ASGI application serving ``session``.

    Args:
        session: the state the page works on (its ``workdir`` is the caller's to remove).
        allowed_hosts: accepted ``Host`` header names (e.g. ``["127.0.0.1", "localhost"]``);
            None accepts any.
    Returns:
        A Starlette app; its shutdown stops a run in progress and waits for the thread.
    """
    static = load_static()

    async def page(request: Request) -> Response:
        return Response(
            static["index.html"], media_type=STATIC_FILES["index.html"], headers=_PAGE_HEADERS
        )

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)  # none: spares the browser's console a 404

    async def static_file(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES or name == "index.html":
            return _error("not found", 404)
        return Response(static[name], media_type=STATIC_FILES[name], headers=_PAGE_HEADERS)

    async def state(request: Request) -> Response:
        since = _int_param(request, "since", 0)
        run = _int_param(request, "run", None)
        return _json(session.snapshot(since or 0, run))

    async def upload(request: Request) -> Response:
        length = request.headers.get("content-length")
        total = int(length) if length and length.isdigit() else None
        dest = session.begin_upload(request.query_params.get("name", "upload"), total)
        received = 0
        try:
            with open(dest, "wb") as f:
                async for chunk in request.stream():
                    received += len(chunk)
                    session.upload_progress(received)
                    f.write(chunk)
        except AppError as exc:
            session.abort_upload(dest, exc.message)
            raise
        except ClientDisconnect:
            log.info("the upload of %s was interrupted", dest.parent.name)
            session.abort_upload(dest, "the upload was interrupted")
            return _error("the upload was interrupted", 400)
        except BaseException:
            session.abort_upload(dest, "the upload was interrupted")
            raise
        return _json(await run_in_threadpool(session.finish_upload, dest))

    async def demo(request: Request) -> Response:
        return _json(await run_in_threadpool(session.load_demo))

    async def json_body(request: Request, example: str) -> dict[str, Any]:
        try:
            body = json.loads(await request.body() or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise AppError(f"the request body must be JSON: {example}") from exc
        return body if isinstance(body, dict) else {}

    async def track(request: Request) -> Response:
        body = await json_body(request, '{"boxes": [[x, y, w, h]]}')
        return _json(session.start(body.get("boxes")))

    async def options(request: Request) -> Response:
        body = await json_body(request, '{"attention": true}')
        if not isinstance(body.get("attention"), bool):
            raise AppError('options must be {"attention": true or false, "target": K}')
        session.set_attention(body["attention"], body.get("target"))
        since, run = _int_param(request, "since", 0), _int_param(request, "run", None)
        return _json(session.snapshot(since or 0, run))

    def action(name: str):  # noqa: ANN202 - a route endpoint
        async def endpoint(request: Request) -> Response:
            getattr(session, name)()
            since, run = _int_param(request, "since", 0), _int_param(request, "run", None)
            return _json(session.snapshot(since or 0, run))

        return endpoint

    async def first_frame(request: Request) -> Response:
        return Response(session.first_frame(), media_type="image/jpeg", headers=_API_HEADERS)

    async def frame(request: Request) -> Response:
        attention = request.query_params.get("attention") in ("1", "true")
        target = _int_param(request, "target", 0) or 0
        data = session.frame(
            request.path_params["run"], request.path_params["index"], attention, target
        )
        return Response(data, media_type="image/jpeg", headers=_API_HEADERS)

    async def download(request: Request) -> Response:
        name = request.path_params["name"]
        what = {"boxes.txt": "boxes", "tracked.mp4": "video"}.get(name)
        if what is None:
            return _error("not found", 404)
        path = session.download(what)
        media = "text/plain; charset=utf-8" if what == "boxes" else "video/mp4"
        return FileResponse(path, media_type=media, filename=path.name, headers=_API_HEADERS)

    async def app_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AppError)
        return _error(exc.message, exc.status)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = "not found" if exc.status_code == 404 else str(exc.detail)
        return _error(message, exc.status_code)

    async def server_error(request: Request, exc: Exception) -> Response:
        log.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
        return _error(f"internal error: {type(exc).__name__}: {exc}".splitlines()[0], 500)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(session.shutdown)

    class CSRFGuard:
        """Refuse a POST without :data:`CSRF_HEADER` (one another site's page cannot send)."""

        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD"):
                headers = dict(scope["headers"])
                key, value = CSRF_HEADER
                if headers.get(key.encode(), b"").decode("latin-1").lower() != value:
                    response = _error(f"POST requests need the header {key}: {value}", 403)
                    await response(scope, receive, send)
                    return
            await self.app(scope, receive, send)

    middleware = [Middleware(CSRFGuard)]
    if allowed_hosts is not None:
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))
    routes = [
        Route("/", page),
        Route("/static/{name}", static_file),
        Route("/favicon.ico", favicon),
        Route("/api/state", state),
        Route("/api/upload", upload, methods=["POST"]),
        Route("/api/demo", demo, methods=["POST"]),
        Route("/api/track", track, methods=["POST"]),
        Route("/api/pause", action("pause"), methods=["POST"]),
        Route("/api/resume", action("resume"), methods=["POST"]),
        Route("/api/stop", action("stop"), methods=["POST"]),
        Route("/api/options", options, methods=["POST"]),
        Route("/api/first-frame.jpg", first_frame),
        Route("/api/frame/{run:int}/{index:int}.jpg", frame),
        Route("/api/download/{name}", download),
    ]
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={AppError: app_error, HTTPException: http_error, 500: server_error},
        lifespan=lifespan,
    )
