"""The OpenAPI document says every answer a route can give (issue 12): the problem responses
that the app adds outside the routes (400 for a malformed request line, query or body, 413 over
the size limit, 404 for an unknown id, 422 for invalid input, 500) are listed on every operation
they can come from, each as ``application/problem+json`` with one Problem schema."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from dsrflow.api.problems import PROBLEM_JSON

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["type", "title", "status", "detail"],
}
_PROBLEM = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
_GENERIC = {
    "400": "Malformed request (a NUL or broken escape in the request line or a query value, a body "
    "that is not JSON)",
    "413": "Body over the size limit",
    "422": "Invalid input",
    "500": "Internal error",
}


def _problem_responses(path: str, method: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    wanted = dict(_GENERIC)
    if "{" in path:
        wanted["404"] = "Unknown id"
    if method not in ("post", "put", "patch"):
        wanted.pop("413")  # a 400 can come from any request line (web/headers.py)
    for status, description in wanted.items():
        responses.setdefault(status, {"description": description})
    for status, response in responses.items():
        if status.startswith(("4", "5")):
            # FastAPI documents its 422 as application/json; every error is a problem document.
            response["content"] = _PROBLEM


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        for path, item in schema.get("paths", {}).items():
            for method, operation in item.items():
                if isinstance(operation, dict) and "responses" in operation:
                    _problem_responses(path, method, operation)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
