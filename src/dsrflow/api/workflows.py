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


@router.get("/legal-reasons", summary="The refusal-reason catalog")
def list_legal_reasons(rt: RuntimeDep) -> list[dict[str, Any]]:
    return [reason.model_dump() for reason in rt.definitions.reasons.values()]
