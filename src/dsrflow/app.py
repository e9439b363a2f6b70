"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from dsrflow import __version__
from dsrflow.api import inbox as inbox_routes
from dsrflow.api import openapi, problems
from dsrflow.api import requests as request_routes
from dsrflow.api import workflows as workflow_routes
from dsrflow.api.limits import BodySizeLimit, RateLimiter
from dsrflow.db import reading
from dsrflow.pages import routes as page_routes
from dsrflow.runtime import Runtime

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
    )
    app.state.runtime = rt
    app.state.rate_limiter = RateLimiter(rt.settings.rate_limit_per_minute)
    problems.install(app)
    app.include_router(request_routes.router)
    app.include_router(workflow_routes.router)
    app.include_router(inbox_routes.router)
    app.include_router(page_routes.router)
    openapi.install(app)

    @app.get("/healthz", tags=["health"], summary="Liveness and database check")
    def healthz() -> dict[str, str]:
        with reading(rt.db).connect() as connection:  # never waits for SQLite's write lock
            connection.exec_driver_sql("SELECT 1")
        return {"status": "ok"}

    app.add_middleware(BodySizeLimit, max_bytes=rt.settings.max_body_bytes)
    return app
