"""``mixformer app``: serve a local web page for tracking a video by hand."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import logging
import socket
import tempfile
from pathlib import Path

from mixformer.cli import CLIError
from mixformer.cli.common import (
    add_model_args,
    add_plain_arg,
    add_threads_arg,
    check_device,
    check_model_name,
    load_model_from_args,
    set_threads,
)
from mixformer.cli.dtype import (
    add_backend_arg,
    add_dtype_arg,
    resolve_backend_arg,
    resolve_dtype_arg,
)

log = logging.getLogger("mixformer.app")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``app`` subcommand."""
    p = sub.add_parser(
        "app",
        help="serve a local web page for tracking a video by hand",
        description="Serve a web page where you open a video (or the built-in demo clip), draw "
        "boxes on its first frame, and watch the tracker follow them, with the score over time, "
        "pause/resume and downloads of boxes.txt and the annotated video. Binds to 127.0.0.1 "
        "(this machine only) unless --host says otherwise; uploads live in a temporary folder "
        "removed on exit. Ctrl-C stops it. Needs pip install 'mixformer[app]'.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860; 0: any free)")
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=500.0,
        help="largest video accepted for upload, in MB (default: 500)",
    )
    add_model_args(p)
    add_threads_arg(p)
    add_plain_arg(p)
    add_dtype_arg(p)
    add_backend_arg(p)
    p.set_defaults(func=run)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str) -> list[str] | None:
    """``Host`` header names to accept: the loopback names when bound to loopback, else any."""
    if not _is_loopback(host):
        return None
    return sorted({"127.0.0.1", "localhost", "[::1]", host})


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``.

    Raises:
        CLIError: bad port, unknown host, or the address is in use / not ours.
    """
    if not 0 <= port <= 65535:
        raise CLIError(f"--port must be between 0 and 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CLIError(f"--host {host!r}: {exc.strerror}") from exc
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CLIError(f"port {port} on {host} is in use: pick another with --port") from exc
        raise CLIError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    """The page's address for a bound socket (the wildcard address shown as 127.0.0.1)."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def run(args: argparse.Namespace) -> int:
    """Check the input, load the model, serve until Ctrl-C, remove the temporary folder."""
    from mixformer.app import require_app_deps

    try:
        require_app_deps()
    except ImportError as exc:
        raise CLIError(str(exc)) from exc
    if not args.max_upload_mb > 0:
        raise CLIError(f"--max-upload-mb must be positive, got {args.max_upload_mb:g}")
    check_model_name(args.model)
    args.device = check_device(args.device)
    # checked here (a named backend's packages, the precisions it runs); the runs pass the
    # settings as given, so that `auto` still picks torch for the attention overlay
    backend = resolve_backend_arg(args)
    resolve_dtype_arg(args, backend)
    sock = bind(args.host, args.port)
    try:
        model = load_model_from_args(args)
        set_threads(args.threads, model, backend)  # what runs without the attention overlay
        with tempfile.TemporaryDirectory(prefix="mixformer-app-") as workdir:
            _serve(args, model, sock, Path(workdir), _weights_of(args))
    finally:
        sock.close()
    return 0


def _weights_of(args: argparse.Namespace) -> str | None:
    """The weights :func:`load_model_from_args` used, as ``build_model`` takes them (for the page):
    ``--weights``, else ``"default"`` when weights ship for the preset, else None (random)."""
    from mixformer.models.factory import default_weights_path

    if args.weights is not None:
        return args.weights
    return "default" if default_weights_path(args.model) is not None else None


def _serve(  # noqa: ANN001 - model: MixFormer, lazy import
    args: argparse.Namespace, model, sock: socket.socket, workdir: Path, weights: str | None
) -> None:
    """Run uvicorn on ``sock`` until it is stopped (Ctrl-C ends with KeyboardInterrupt)."""
    import uvicorn

    from mixformer.app.server import create_app
    from mixformer.app.session import Session

    session = Session(
        model,
        workdir,
        device=args.device,
        fast=not args.plain,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        weights=weights,
        backend=args.backend,
        dtype=args.dtype,
    )
    app = create_app(session, allowed_hosts=allowed_hosts(args.host))
    config = uvicorn.Config(
        app,
        log_level="info" if args.verbose else "warning",
        access_log=bool(args.verbose),
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    if not _is_loopback(args.host):
        log.warning("serving on %s: anyone who can reach this machine can use the page", args.host)
    print(f"mixformer app: serving {url_of(sock)} (Ctrl-C to stop)", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        session.shutdown()
    log.debug("removing %s", workdir)
