"""The HTTP API (Starlette):

    GET  /healthz                  no token: liveness and queue depth
    POST /alertmanager             Alertmanager webhook payload (version "4")
    POST /alerts                   generic JSON form (alerts.parse_generic)
    GET  /diagnoses                recent diagnoses and resolved alerts
    GET  /diagnoses/{id}           one diagnosis: JSON, or markdown with
                                   `Accept: text/markdown` or `?format=md`

Everything but /healthz needs `Authorization: Bearer TOKEN`. Bodies over
`max_body_bytes` are refused (413) before they are read in full.
"""
from __future__ import annotations

import hmac
import json
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .alertmap import AlertMap
from .alerts import PayloadError, parse_alertmanager, parse_generic
from .audit import AuditLog
from .config import ServeConfig
from .scheduler import Scheduler
from .store import Store


class TooLarge(Exception):
    pass


def create_app(config: ServeConfig, audit: AuditLog, alertmap: AlertMap) -> Starlette:
    store = Store(keep=config.keep, state_dir=config.state_dir)
    scheduler = Scheduler(config, store, audit, alertmap)

    def authorized(request: Request) -> bool:
        if config.token is None:  # --insecure-no-auth on loopback (config.check)
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), config.token.encode())

    def guarded(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def wrapper(request: Request) -> Response:
            if not authorized(request):
                audit.event("auth_refused", path=request.url.path,
                            client=request.client.host if request.client else None)
                return JSONResponse({"error": "missing or wrong bearer token"}, 401,
                                    headers={"WWW-Authenticate": 'Bearer realm="sysdiag"'})
            return await handler(request)
        return wrapper

    async def read_json(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > config.max_body_bytes:
            raise TooLarge()
        body = bytearray()
        async for chunk in request.stream():  # also bounds chunked bodies without a length
            body += chunk
            if len(body) > config.max_body_bytes:
                raise TooLarge()
        try:
            return json.loads(body)
        except ValueError as err:
            raise PayloadError(f"body: not JSON ({err})") from err

    def ingest(parse: Callable[[Any], Any], source: str) -> Callable[[Request], Any]:
        async def handler(request: Request) -> Response:
            try:
                parsed = parse(await read_json(request))
            except TooLarge:
                return JSONResponse({"error": f"body larger than {config.max_body_bytes} "
                                     "bytes"}, 413)
            except PayloadError as err:
                audit.event("payload_refused", path=request.url.path, error=str(err))
                return JSONResponse({"error": str(err)}, 400)
            alerts, group = parsed if isinstance(parsed, tuple) else (parsed, {})
            audit.event("received", path=request.url.path, alerts=len(alerts),
                        group_key=group.get("groupKey"), receiver=group.get("receiver"))
            results = [scheduler.submit(alert, source) for alert in alerts]
            body = {"results": results, "queued": scheduler.queued,
                    "running": scheduler.running}
            if any(r["outcome"] == "rejected" for r in results):
                retry = scheduler.retry_after_s()
                body["error"] = "diagnosis queue full; accepted alerts are kept, retry the rest"
                return JSONResponse(body, 503, headers={"Retry-After": str(retry)})
            return JSONResponse(body, 202)
        return handler

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "queued": scheduler.queued,
                             "running": scheduler.running,
                             "queue_size": config.queue_size})

    async def list_diagnoses(request: Request) -> Response:
        return JSONResponse({"diagnoses": [r.summary() for r in store.recent()],
                             "resolved": list(scheduler.resolved)[:50]})

    async def get_diagnosis(request: Request) -> Response:
        record = store.get(request.path_params["diag_id"])
        if record is None:
            return JSONResponse({"error": "no such diagnosis (ids are 16 hex digits; "
                                 "GET /diagnoses lists recent ones)"}, 404)
        fmt = request.query_params.get("format")
        wants_md = fmt in ("md", "markdown") or (
            fmt is None and "text/markdown" in request.headers.get("accept", ""))
        if fmt not in (None, "md", "markdown", "json"):
            return JSONResponse({"error": "format: json or md"}, 400)
        if wants_md:
            return PlainTextResponse(_markdown(record), media_type="text/markdown")
        return JSONResponse(record.to_json())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await scheduler.start()
        audit.event("started", listen=config.listen, port=config.port,
                    auth=config.token is not None, queue_size=config.queue_size,
                    workers=config.workers, destinations=[d.target for d in
                                                          config.destinations])
        try:
            yield
        finally:
            await scheduler.stop()
            audit.event("stopped")

    app = Starlette(routes=[
        Route("/healthz", healthz, methods=["GET"]),
        Route("/alertmanager", guarded(ingest(parse_alertmanager, "alertmanager")),
              methods=["POST"]),
        Route("/alerts", guarded(ingest(parse_generic, "generic")), methods=["POST"]),
        Route("/diagnoses", guarded(list_diagnoses), methods=["GET"]),
        Route("/diagnoses/{diag_id}", guarded(get_diagnosis), methods=["GET"]),
    ], lifespan=lifespan)
    app.state.scheduler = scheduler
    return app


def _markdown(record: Any) -> str:
    """The report's markdown under a short header naming the alerts."""
    alerts = ", ".join(sorted({a["name"] for a in record.alerts.values()}))
    head = [f"# sysdiag diagnosis {record.id}", "",
            f"- alerts: {_md_escape(alerts)}", f"- symptom: {record.symptom}",
            f"- status: {record.status}" + (f", exit code {record.exit_code}"
                                            if record.exit_code is not None else "")]
    head += [f"- scope: {_md_escape(k)}={_md_escape(v)}" for k, v in record.scope.items()]
    head += [f"- {_md_escape(k)}: {_md_escape(v)}" for k, v in record.context.items()]
    head += [f"- note: {_md_escape(n)}" for n in record.notes]
    if record.error:
        head.append(f"- error: {_md_escape(record.error)}")
    body = record.markdown or ("(the diagnosis has not finished)" if record.status in
                               ("queued", "running") else "(no report)")
    return "\n".join(head) + "\n\n" + body


def _md_escape(text: str) -> str:
    from sysdiag.report.escape import md

    return md(text)
