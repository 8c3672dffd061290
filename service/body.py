"""Request bodies: strict JSON, errors capped, documented by their pydantic models.

FastAPI's own body handling parses with `json.loads` (which accepts `NaN` and `Infinity`, then
fails to render them back in its 422) and validates on the event loop. Routes read their bodies
themselves instead (`service.requests`: orjson and a fast path, parsed in a worker thread once
large) and whatever the fast path does not take is validated by pydantic's own JSON parser,
which refuses non-finite literals and names the field; error responses carry the first few
errors without echoing the input.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from email.message import Message
from typing import Any, TypeVar

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

MAX_ERRORS = 5
# Bodies up to this size validate inline (cheaper than a thread hop); larger ones in a thread.
INLINE_BYTES = 32_768


def error_detail(errors: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The 422 body: the first MAX_ERRORS errors as {loc, msg, type}, never the input."""
    shown = [
        {
            "loc": list(error.get("loc", ())),
            "msg": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        for error in errors[:MAX_ERRORS]
    ]
    content: dict[str, Any] = {"detail": shown}
    if len(errors) > MAX_ERRORS:
        content["errors_total"] = len(errors)
    return content


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return JSONResponse(status_code=422, content=error_detail(errors))


def is_json(content_type: str | None) -> bool:
    if not content_type:
        return True  # curl -d without -H: treat as JSON, as most clients mean it
    message = Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def validate(model: type[M], raw: bytes) -> M:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in errors]
        ) from None


async def read_json(request: Request) -> bytes:
    """The raw body of a JSON request: 415 for another content type or a compressed body,
    422 when empty."""
    if not is_json(request.headers.get("content-type")):
        raise HTTPException(status_code=415, detail="send the body as application/json")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise HTTPException(
            status_code=415,
            detail=f"content-encoding {encoding[:20]!r} is not accepted; send the body "
            "uncompressed",
        )
    raw = await request.body()
    if not raw:
        raise RequestValidationError(
            [{"loc": ("body",), "msg": "a JSON body is required", "type": "missing"}]
        )
    return raw


def body_openapi(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its body itself (service.requests) and is
    documented as taking `model`."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def document_bodies(app: FastAPI, *models: type[BaseModel]) -> None:
    """Add `models` (and the models they use) to the app's OpenAPI components."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in models:
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(body.pop("$defs", {}))
            components[model.__name__] = body
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def document_history_limits(
    app: FastAPI, max_rows: int, max_batch: int, min_rows: Callable[[], int | None]
) -> None:
    """State in the OpenAPI document the lengths the service enforces: a history of at most
    `max_rows` and at least what the served model needs (`min_rows()`, read on every request
    for the document, since a reload may change it; absent while no model is loaded), and at
    most `max_batch` requests in a batch."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = copy.deepcopy(build())
        request = schema["components"]["schemas"]["PredictionRequest"]
        history = request["properties"]["history"]
        for variant in history.get("anyOf", [history]):
            if variant.get("type") == "array":
                variant["maxItems"] = max_rows
                needed = min_rows()
                if needed is not None:
                    variant["minItems"] = needed
        schema["components"]["schemas"]["BatchRequest"]["properties"]["requests"]["maxItems"] = (
            max_batch
        )
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
