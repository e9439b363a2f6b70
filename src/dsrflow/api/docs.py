"""API documentation at /docs (Swagger UI) and /redoc, from local files only.

The scripts come from the ``fastapi-offline`` package, which ships Swagger UI and ReDoc; no CDN
is asked, so the page works offline and runs no third-party code where handlers paste tokens.
The security middleware gives these routes their CSP (``script-src 'self'``).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, Response

router = APIRouter(include_in_schema=False)
VENDORED = Path(str(files("fastapi_offline") / "static"))
OURS = Path(__file__).parent / "docs_assets"
ASSETS = {
    "swagger-ui-bundle.js": (VENDORED, "text/javascript; charset=utf-8"),
    "swagger-ui.css": (VENDORED, "text/css; charset=utf-8"),
    "redoc.standalone.js": (VENDORED, "text/javascript; charset=utf-8"),
    "favicon.png": (VENDORED, "image/png"),
    "swagger-init.js": (OURS, "text/javascript; charset=utf-8"),
}

SWAGGER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dsrflow API</title>
<link rel="icon" href="/docs/assets/favicon.png">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/swagger-init.js"></script>
</body></html>"""

REDOC = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dsrflow API</title>
<link rel="icon" href="/docs/assets/favicon.png"></head>
<body><redoc spec-url="/openapi.json"></redoc>
<script src="/docs/assets/redoc.standalone.js"></script>
</body></html>"""


@router.get("/docs")
def swagger_ui() -> HTMLResponse:
    return HTMLResponse(SWAGGER)


@router.get("/redoc")
def redoc() -> HTMLResponse:
    return HTMLResponse(REDOC)


@router.get("/docs/assets/{name}")
def docs_asset(name: str) -> Response:
    if name not in ASSETS:
        return Response(status_code=404)
    directory, media_type = ASSETS[name]
    return FileResponse(directory / name, media_type=media_type)
