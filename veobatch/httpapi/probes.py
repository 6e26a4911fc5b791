"""What operators and orchestrators ask `serve`: `/healthz` (the process answers), `/readyz`
(it can serve: the database is reachable and migrated; 503 otherwise), both without a token,
and `/metrics` (Prometheus' text format: this process's counts and the gauges read from the
database), which needs a token like every API route (a read-only one is enough)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.concurrency import run_in_threadpool

from veobatch.health import database_check
from veobatch.metrics import series
from veobatch.service import BatchService
from veobatch.store.gauges import store_registry


def serve_probes(app: FastAPI) -> None:
    service: BatchService = app.state.service
    gauges = store_registry(service.engine, service.settings.max_in_flight)
    series()  # every series shows, at 0 until counted

    @app.get("/healthz", include_in_schema=False)
    def alive() -> JSONResponse:
        return JSONResponse({"ok": True})

    @app.get("/readyz", include_in_schema=False)
    def ready() -> JSONResponse:
        found = database_check(service.settings, service.engine)
        body = {"ok": found.ok, "database": found.detail}
        return JSONResponse(body, status_code=200 if found.ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        text = await run_in_threadpool(lambda: generate_latest(REGISTRY) + generate_latest(gauges))
        return Response(text, media_type=CONTENT_TYPE_LATEST)
