"""The loaded definitions, for any client (no personal data here)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from dsrflow.api.deps import RuntimeDep
from dsrflow.errors import NotFound

router = APIRouter(prefix="/api/v1", tags=["workflows"])


@router.get("/workflows", summary="Every request type and its workflow")
def list_workflows(rt: RuntimeDep) -> list[dict[str, Any]]:
    return [wf.model_dump() for wf in rt.definitions.workflows.values()]


@router.get("/workflows/{request_type}", summary="One workflow definition")
def get_workflow(request_type: str, rt: RuntimeDep) -> dict[str, Any]:
    wf = rt.definitions.workflows.get(request_type)
    if wf is None:
        raise NotFound(f"No workflow '{request_type}'.")
    return wf.model_dump()


@router.get(
    "/legal-reasons", summary="The reason catalog, or the reasons that fit a type and state"
)
def list_legal_reasons(
    rt: RuntimeDep, type: str | None = None, state: str | None = None
) -> list[dict[str, Any]]:
    """With ``type`` and/or ``state``, only the reasons a handler may cite there (a fee reason
    only where the workflow has a fee)."""
    definitions = rt.definitions
    if type is not None and type not in definitions.workflows:
        raise NotFound(f"No workflow '{type}'.")
    if type is None and state is None:
        return [reason.model_dump() for reason in definitions.reasons.values()]
    types = [type] if type is not None else list(definitions.workflows)
    codes: dict[str, Any] = {}
    for request_type in types:
        wf = definitions.workflow(request_type)
        for reason_state in [state] if state is not None else list(wf.states):
            for reason in definitions.reasons_for(request_type, reason_state):
                codes.setdefault(reason.code, reason)
    return [r.model_dump() for code, r in definitions.reasons.items() if code in codes]
