"""Report routes: the CSV export, the handling record, and the Prometheus metrics."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from prometheus_client import CONTENT_TYPE_LATEST

from dsrflow.api.deps import Reader, ReadSessionDep, RuntimeDep, permission
from dsrflow.api.problems import HANDLER_PROBLEMS as PROBLEMS
from dsrflow.auth.models import Handler
from dsrflow.reports import metrics
from dsrflow.reports import service as reports
from dsrflow.reports.schemas import RequestFigures

router = APIRouter(tags=["reports"])
templates = Jinja2Templates(directory=str(Path(reports.__file__).parent / "templates"))
Auditor = Annotated[Handler, Depends(permission("audit"))]
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
PERIOD: dict[int | str, dict[str, Any]] = {
    **PROBLEMS,
    422: {"description": "A missing or malformed date, or 'to' before 'from'"},
}
From = Annotated[date, Query(alias="from", description="First day of arrival (YYYY-MM-DD).")]
To = Annotated[date, Query(alias="to", description="Last day of arrival, included (YYYY-MM-DD).")]


@router.get(
    "/api/v1/reports/requests.csv",
    response_class=Response,
    responses={**PERIOD, 200: {"content": {"text/csv": {}}}},
    summary="One CSV row per request that arrived in the period",
)
def requests_csv(
    rt: RuntimeDep, session: ReadSessionDep, _: Reader, start: From, end: To
) -> Response:
    """Columns, in order: reference, type, channel, received_at, acknowledged_at,
    identity_method, outcome, reason_code, closed_at, days_taken. Times are UTC (ISO 8601);
    the period is of Japan-time arrival dates; ``days_taken`` counts calendar days between
    the local dates of arrival and closing."""
    text = reports.requests_csv(reports.request_rows(rt, session, start, end))
    name = f"requests-{start.isoformat()}-{end.isoformat()}.csv"
    return Response(
        # A BOM, so that Excel reads the UTF-8 as such.
        content="\ufeff" + text,
        media_type="text/csv; charset=utf-8",
        headers={**NO_STORE, "Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get(
    "/api/v1/reports/figures",
    response_model=RequestFigures,
    responses=PERIOD,
    summary="Per month of arrival and type: count, median days, overdue, refusals, Art. 39",
)
def figures(
    rt: RuntimeDep, session: ReadSessionDep, _: Reader, response: Response, start: From, end: To
) -> RequestFigures:
    response.headers.update(NO_STORE)
    return reports.monthly_figures(rt, session, start, end)


@router.get(
    "/api/v1/reports/handling-record",
    response_class=HTMLResponse,
    responses=PERIOD,
    summary="The handling record (JIS Q 15001), printable HTML",
)
def handling_record(
    request: Request, rt: RuntimeDep, session: ReadSessionDep, _: Reader, start: From, end: To
) -> HTMLResponse:
    """Every request that arrived in the period with how it was handled, and the result of
    ``dsrflow audit verify`` at the time of the export (with each request's chain head)."""
    record = reports.handling_record(rt, session, start, end)
    tz = rt.settings.tz
    response = templates.TemplateResponse(
        request,
        "handling_record.html",
        {
            "record": record,
            "company": rt.definitions.company.name.for_language("ja"),
            "local": lambda moment: (
                moment.astimezone(tz).strftime("%Y-%m-%d %H:%M") if moment else ""
            ),
        },
    )
    response.headers.update(
        {
            **NO_STORE,
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
            "frame-ancestors 'none'",
        }
    )
    return response


@router.get(
    "/metrics",
    response_class=Response,
    responses={**PROBLEMS, 200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    summary="Prometheus metrics (admin or auditor token)",
)
def prometheus_metrics(rt: RuntimeDep, session: ReadSessionDep, _: Auditor) -> Response:
    body = metrics.render(rt, session)
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers=NO_STORE)
