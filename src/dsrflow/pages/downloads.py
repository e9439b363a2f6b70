"""The requester's downloads of a disclosure package, from the status page.

``GET /status/{token}/packages/{file id}``: the status token is the authority; the link works
until the package expires and as many times as its limit allows, and each download is audited.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from dsrflow.api.deps import RuntimeDep, SessionDep
from dsrflow.errors import Gone, NotFound
from dsrflow.packages import service as packages
from dsrflow.pages.routes import _language, _limited, _notice, _too_many

router = APIRouter(include_in_schema=False)


@router.get("/status/{token}/packages/{file_id}")
def download_file(
    token: str, file_id: str, request: Request, rt: RuntimeDep, session: SessionDep
) -> Response:
    lang = _language(request)
    wait = _limited(request, "status")
    if wait is not None:
        return _too_many(request, rt, lang, wait)
    try:
        found = packages.download(rt, session, token, file_id)
    except NotFound:
        return _notice(request, rt, lang, "not_found_heading", "not_found_body", status_code=404)
    except Gone:
        return _notice(
            request, rt, lang, "package_gone_heading", "package_gone_body", status_code=410
        )
    return FileResponse(
        found.path,
        media_type="application/octet-stream",
        headers={
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": "sandbox",
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(found.filename)}",
        },
    )
