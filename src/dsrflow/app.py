"""The FastAPI application factory."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI
from starlette.types import Scope

from dsrflow import __version__
from dsrflow.api import docs as docs_routes
from dsrflow.api import documents as document_routes
from dsrflow.api import inbox as inbox_routes
from dsrflow.api import openapi, problems
from dsrflow.api import packages as package_routes
from dsrflow.api import reports as report_routes
from dsrflow.api import requests as request_routes
from dsrflow.api import workflows as workflow_routes
from dsrflow.config import Settings
from dsrflow.console import routes as console_routes
from dsrflow.db import reading
from dsrflow.pages import downloads as download_routes
from dsrflow.pages import procedure as procedure_routes
from dsrflow.pages import routes as page_routes
from dsrflow.runtime import Runtime
from dsrflow.web.csrf import Csrf
from dsrflow.web.headers import SecurityHeaders
from dsrflow.web.limits import BodySizeLimit, RateLimiter

# Where a disclosure package is uploaded: the API, and the console's fulfil form.
PACKAGE_UPLOAD = re.compile(r"/(api/v1|console)/requests/[^/]+/packages?")
Background = Callable[[Runtime], AbstractAsyncContextManager[object]]

DESCRIPTION = """
Data-subject requests under Japan's Act on the Protection of Personal Information (APPI):
intake, identity, deadlines, outcomes.

* `POST /api/v1/requests` is public (rate- and size-limited).
* Every other `/api/v1/requests` route needs `Authorization: Bearer <token>` from
  `dsrflow handlers add`.
* Errors are RFC 9457 problem details (`application/problem+json`).
"""


def create_app(rt: Runtime, *, background: Background | None = None) -> FastAPI:
    """Build the app around a loaded runtime; ``background`` runs for the app's lifetime
    (the scheduler, in ``dsrflow serve``)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The pool that runs sync routes, sync dependencies and run_in_threadpool.
        threads = rt.settings.api_threads_for(rt.db.dialect.name)
        to_thread.current_default_thread_limiter().total_tokens = threads
        if background is None:
            yield
            return
        async with background(rt):
            yield

    app = FastAPI(
        title="dsrflow",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from local assets by api/docs.py
        redoc_url=None,
    )
    settings = rt.settings
    app.state.runtime = rt
    # The hooks the faces share: app.state.rate_limiter.retry_after(bucket, client) and
    # app.state.csrf (dsrflow.web.csrf.Csrf).
    app.state.rate_limiter = RateLimiter(
        settings.rate_limit_per_minute,
        buckets=settings.rate_limits,
        max_clients=settings.rate_limit_max_clients,
    )
    app.state.csrf = Csrf(rt.secret_key, settings.base_url)
    problems.install(app)
    app.include_router(request_routes.router)
    app.include_router(workflow_routes.router)
    app.include_router(inbox_routes.router)
    app.include_router(document_routes.router)
    app.include_router(package_routes.router)
    app.include_router(report_routes.router)
    app.include_router(page_routes.router)
    app.include_router(download_routes.router)
    app.include_router(console_routes.router)
    app.include_router(procedure_routes.router)
    openapi.install(app)
    app.include_router(docs_routes.router)

    @app.get("/healthz", tags=["health"], summary="Liveness and database check")
    def healthz() -> dict[str, str]:
        with reading(rt.db).connect() as connection:  # never waits for SQLite's write lock
            connection.exec_driver_sql("SELECT 1")
        return {"status": "ok"}

    refusal = page_routes.page_refusal(rt)
    app.add_middleware(BodySizeLimit, max_bytes=_body_limit(settings), refusal=refusal)
    app.add_middleware(
        SecurityHeaders,
        https=settings.base_url.lower().startswith("https://"),
        max_header_bytes=settings.max_header_bytes,
        refusal=refusal,
    )
    return app


def _body_limit(settings: Settings) -> Callable[[Scope], int]:
    """The form, the document upload and a disclosure package (as large as its configured
    limit, plus room for the multipart framing) take more than the JSON API."""

    def limit(scope: Scope) -> int:
        path = scope["path"]
        if scope.get("method") == "POST" and PACKAGE_UPLOAD.fullmatch(path):
            return settings.package_max_bytes + 1024 * 1024
        if path == "/":
            return settings.max_form_bytes
        if path.startswith("/status/") and path.endswith("/documents"):
            return settings.max_upload_bytes + 64 * 1024  # the file and the form around it
        return settings.max_body_bytes

    return limit
