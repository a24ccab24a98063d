"""`sysdiag serve`: diagnose when the pager fires (docs/serve.md)."""
from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import UserError, WindowOpt

_NET, _RUN, _OUT = "Listening and auth", "Diagnoses", "Delivery and records"


def serve_command(
    listen: Annotated[str, typer.Option(
        "--listen", metavar="ADDR", rich_help_panel=_NET,
        help="Address to listen on; anything but loopback should sit behind TLS.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(
        "--port", min=0, max=65535, rich_help_panel=_NET,
        help="TCP port (0: any free one, printed on stderr).")] = 9877,
    token_file: Annotated[Optional[Path], typer.Option(
        "--token-file", metavar="FILE", rich_help_panel=_NET,
        help="File holding the bearer token (mode 600); else $SYSDIAG_SERVE_TOKEN.")] = None,
    insecure_no_auth: Annotated[bool, typer.Option(
        "--insecure-no-auth", rich_help_panel=_NET,
        help="Accept requests without a token (loopback addresses only).")] = False,
    max_body: Annotated[int, typer.Option(
        "--max-body", min=1024, max=16 * 1024 * 1024, metavar="BYTES", rich_help_panel=_NET,
        help="Largest request body accepted (413 above).")] = 256 * 1024,
    tls_cert: Annotated[Optional[Path], typer.Option(
        "--tls-cert", metavar="PEM", rich_help_panel=_NET, help="Serve HTTPS with this "
        "certificate (with --tls-key).")] = None,
    tls_key: Annotated[Optional[Path], typer.Option(
        "--tls-key", metavar="PEM", rich_help_panel=_NET, help="Key of --tls-cert.")] = None,
    instance: Annotated[Optional[list[str]], typer.Option(
        "--instance", metavar="NAME", rich_help_panel=_NET,
        help="Another value of the `instance` label that means this host (repeatable); "
             "alerts for other instances are skipped.")] = None,
    any_instance: Annotated[bool, typer.Option(
        "--any-instance", rich_help_panel=_NET,
        help="Diagnose this host whatever the alert's `instance` label says.")] = False,
    window: WindowOpt = None,
    deadline: Annotated[float, typer.Option(
        "--deadline", min=1.0, max=600.0, metavar="SECONDS", rich_help_panel=_RUN,
        help="Hard bound on each diagnosis.")] = 20.0,
    reuse_window: Annotated[float, typer.Option(
        "--reuse-window", min=0.0, metavar="SECONDS", rich_help_panel=_RUN,
        help="A firing alert seen again within this time reuses its diagnosis.")] = 600.0,
    queue_size: Annotated[int, typer.Option(
        "--queue-size", min=1, max=1000, metavar="N", rich_help_panel=_RUN,
        help="Diagnoses that may wait; beyond, alerts get 503 + Retry-After.")] = 16,
    workers: Annotated[int, typer.Option(
        "--workers", min=1, max=4, metavar="N", rich_help_panel=_RUN,
        help="Diagnoses that may run at once (different symptoms only).")] = 1,
    alertmap: Annotated[Optional[Path], typer.Option(
        "--alertmap", metavar="FILE", rich_help_panel=_RUN,
        help="YAML that extends or overrides the shipped alert mapping.")] = None,
    rules_dir: Annotated[Optional[list[Path]], typer.Option(
        "--rules-dir", metavar="DIR", rich_help_panel=_RUN,
        help="Extra rule pack directory (repeatable).")] = None,
    webhook_url: Annotated[Optional[list[str]], typer.Option(
        "--webhook-url", metavar="URL", envvar="SYSDIAG_WEBHOOK_URL", rich_help_panel=_OUT,
        help="POST each finished diagnosis (JSON) here (repeatable).")] = None,
    slack_url: Annotated[Optional[list[str]], typer.Option(
        "--slack-url", metavar="URL", envvar="SYSDIAG_SLACK_URL", rich_help_panel=_OUT,
        help="Slack-compatible incoming webhook (repeatable; prefer the env var: the URL "
             "is a secret).")] = None,
    delivery_timeout: Annotated[float, typer.Option(
        "--delivery-timeout", min=0.1, max=60.0, metavar="SECONDS", rich_help_panel=_OUT,
        help="Timeout of one delivery attempt.")] = 5.0,
    delivery_attempts: Annotated[int, typer.Option(
        "--delivery-attempts", min=1, max=10, metavar="N", rich_help_panel=_OUT,
        help="Attempts per destination (connection errors, 429 and 5xx are retried).")] = 3,
    public_url: Annotated[Optional[str], typer.Option(
        "--public-url", metavar="URL", rich_help_panel=_OUT,
        help="Base URL of this service, for links in delivered messages.")] = None,
    audit_log: Annotated[Optional[Path], typer.Option(
        "--audit-log", metavar="FILE", rich_help_panel=_OUT,
        help="JSON-lines audit log (default: stderr).")] = None,
    state_dir: Annotated[Optional[Path], typer.Option(
        "--state-dir", metavar="DIR", rich_help_panel=_OUT,
        help="Keep diagnoses here across restarts (default: memory only).")] = None,
) -> None:
    """Accept Alertmanager webhooks, diagnose this host for each alert, deliver the result.

    Listens on 127.0.0.1 by default; every endpoint but /healthz needs the bearer token.
    See docs/serve.md for the API, the alert mapping and a systemd unit.
    """
    try:
        import uvicorn

        from sysdiag.serve.alertmap import AlertMap, AlertMapError
        from sysdiag.serve.app import create_app
        from sysdiag.serve.audit import AuditLog
        from sysdiag.serve.config import ConfigError, ServeConfig, read_token
        from sysdiag.serve.deliver import Destination, Policy, check_url
    except ImportError as err:
        raise UserError(f"sysdiag serve needs the `serve` extra ({err.name} is missing): "
                        "pip install 'sysdiag[serve]'") from err

    if (tls_cert is None) != (tls_key is None):
        raise UserError("--tls-cert and --tls-key go together")
    try:
        destinations = [Destination("webhook", check_url(u, "--webhook-url"))
                        for u in webhook_url or []]
        destinations += [Destination("slack", check_url(u, "--slack-url"))
                         for u in slack_url or []]
        config = ServeConfig(
            listen=listen, port=port, token=read_token(token_file),
            insecure_no_auth=insecure_no_auth, window_s=window, deadline_s=deadline,
            reuse_window_s=reuse_window, queue_size=queue_size, workers=workers,
            max_body_bytes=max_body, alertmap=alertmap, rules_dirs=list(rules_dir or []),
            destinations=destinations,
            delivery=Policy(timeout_s=delivery_timeout, attempts=delivery_attempts),
            audit_log=audit_log, state_dir=state_dir, public_url=public_url,
            instances=list(instance or []), any_instance=any_instance)
        config.check()
        amap = AlertMap.load(alertmap)
        for directory in config.rules_dirs:
            if not directory.is_dir():
                raise ConfigError(f"--rules-dir {directory}: not a directory of rule files")
        sock = _bind(listen, port)
        audit = AuditLog(audit_log)
        app = create_app(config, audit, amap)
    except (ConfigError, AlertMapError, ValueError, OSError) as err:
        raise UserError(str(err)) from err

    bound = sock.getsockname()[1]
    config.port = bound
    scheme = "https" if tls_cert else "http"
    host = f"[{listen}]" if ":" in listen else listen
    print(f"sysdiag serve: listening on {scheme}://{host}:{bound}"
          + ("" if config.token else " (no authentication: --insecure-no-auth)"),
          file=sys.stderr, flush=True)
    server = uvicorn.Server(uvicorn.Config(
        app, log_level="warning", access_log=False, server_header=False, lifespan="on",
        limit_concurrency=128, timeout_keep_alive=5, timeout_graceful_shutdown=5,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None))
    try:
        server.run(sockets=[sock])
    finally:
        audit.close()
    if not server.started:
        raise UserError("the service did not start (see the messages above)")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto given: asyncio sets TCP_NODELAY on accepted sockets only when it is IPPROTO_TCP
    # (proto 0 left Nagle on: every keep-alive response waited ~40 ms for a delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise UserError(f"--listen {host} --port {port}: {err.strerror}") from err
    return sock
