"""The one place where errors become HTTP responses, all in the shape of SPEC.md §3."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.dependencies.utils import get_flat_params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute

from amply.kit.errors import ERROR_CODES, ERROR_STATUSES, AmplyError, error_body

logger = logging.getLogger(__name__)

_TYPE_BY_STATUS = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
_CODE_BY_STATUS = {
    400: "invalid_request",
    401: "authentication_required",
    403: "forbidden",
    404: "resource_missing",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}

# Where a parameter came from: the error's `param` names the parameter alone.
_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})

# Declared in routes' ``responses=`` so OpenAPI documents the error shape: one component,
# ``Error``, that every error response refers to (``install_openapi`` in amply.main adds it).
ERROR_COMPONENT: dict[str, Any] = {
    "type": "object",
    "title": "Error",
    "description": "The one shape of every error this API sends.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "title": "ErrorDetail",
            "required": ["type", "code", "message"],
            "properties": {
                "type": {
                    "type": "string",
                    "description": "Error category: invalid_request_error, "
                    "authentication_error, permission_error, rate_limit_error or api_error.",
                },
                "code": {
                    "type": "string",
                    "description": "Machine-readable error code (the responses of each "
                    "operation, and the catalogue in the API description, list them).",
                },
                "message": {"type": "string", "description": "What went wrong, for a person."},
                "param": {
                    "anyOf": [{"type": "string"}, {"type": "null"}],
                    "description": "The request parameter at fault, if any.",
                },
            },
        }
    },
}
ERROR_SCHEMA: dict[str, Any] = {"$ref": "#/components/schemas/Error"}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for a route that can answer with these error statuses: each
    described by what the status means and the codes it carries, with an example."""
    return {status: _error_response(status) for status in statuses}


def _error_response(status: int) -> dict[str, Any]:
    meaning, codes = ERROR_STATUSES.get(status, ("Error.", ()))
    listed = "; ".join(f"`{code}`: {ERROR_CODES[code]}" for code in codes)
    description = f"{meaning} `error.code` is one of: {listed}." if codes else meaning
    example_code = codes[0] if codes else "invalid_request"
    example = error_body(
        error_type=_TYPE_BY_STATUS.get(status, "invalid_request_error")
        if status < 500
        else "api_error",
        code=example_code,
        message=ERROR_CODES.get(example_code, meaning),
        param=None,
    )
    return {
        "description": description,
        "content": {"application/json": {"schema": ERROR_SCHEMA, "example": example}},
    }


def declare_request_errors(routes: Iterable[BaseRoute]) -> None:
    """Declare the errors that reading a request can answer on every route that reads one.

    A route with parameters or a body answers 422 for invalid input and 400 for input it
    cannot read at all (a body that is not JSON, a parameter holding NUL), both in the
    standard shape. Without this, FastAPI documents its own 422 body (``{"detail": [...]}``),
    which this API never sends, and the 400s go undocumented. Call it before the routes are
    included in another router: the included copies take their ``responses`` from these.
    """
    for route in routes:
        if not isinstance(route, APIRoute):
            continue
        if not get_flat_params(route.dependant) and route.body_field is None:
            continue
        declared = {str(status) for status in route.responses}
        missing = [status for status in (400, 422) if str(status) not in declared]
        # A new dict: routes may share one ``responses`` mapping.
        route.responses = {**route.responses, **error_responses(*missing)}


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=body, headers=headers)


async def _amply_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, AmplyError)
    if error.status_code == 500:
        # A domain error that means a bug upstream: its details are for the log, not the client.
        return await _unexpected_error(request, error)
    return _json(error.status_code, error.body(), headers=error.headers() or None)


async def _validation_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = error.errors()
    first = problems[0] if problems else {}
    if first.get("type") == "json_invalid":
        return _json(400, _invalid_json_body())
    location = [str(part) for part in first.get("loc", ()) if part not in _LOCATIONS]
    param = ".".join(location) or None
    message = str(first.get("msg", "Invalid request."))
    if param:
        message = f"{param}: {message}"
    body = error_body(
        error_type="invalid_request_error", code="parameter_invalid", message=message, param=param
    )
    return _json(422, body)


def _invalid_json_body() -> dict[str, Any]:
    return error_body(
        error_type="invalid_request_error",
        code="body_invalid_json",
        message="The request body is not valid JSON.",
        param=None,
    )


async def _http_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    status = error.status_code
    if status == 400 and isinstance(error.__cause__, UnicodeDecodeError):
        # FastAPI's answer to a JSON body that is not UTF-8: the same mistake as bad JSON.
        return _json(400, _invalid_json_body())
    body = error_body(
        error_type=_TYPE_BY_STATUS.get(status, "invalid_request_error"),
        code=_CODE_BY_STATUS.get(status, "http_error"),
        message=str(error.detail),
        param=None,
    )
    return _json(status, body, headers=dict(error.headers or {}))


# SQLSTATE classes and codes that mean "the database is not there right now", not a bug:
# connection exceptions (08), too many connections (53300), shutdown or restart (57P01-57P03).
_UNAVAILABLE_SQLSTATES = ("08", "53300", "57P01", "57P02", "57P03")


def is_database_unavailable(error: BaseException) -> bool:
    """True for errors that say the database cannot be reached, rather than a bug."""
    if isinstance(error, OSError):  # refused, timed out, socket gone (embedded server down)
        return True
    if isinstance(error, DBAPIError):
        sqlstate = getattr(error.orig, "sqlstate", None) or ""
        return error.connection_invalidated or sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
    return False


# PostgreSQL text cannot hold NUL (U+0000): a path or query parameter carrying one is
# refused by the database itself, and that is the client's error, not ours.
_UNSTORABLE_TEXT_SQLSTATES = ("22021", "22P05")


async def _database_error(request: Request, error: Exception) -> JSONResponse:
    sqlstate = getattr(getattr(error, "orig", None), "sqlstate", None)
    if sqlstate in _UNSTORABLE_TEXT_SQLSTATES:
        body = error_body(
            error_type="invalid_request_error",
            code="parameter_invalid",
            message="A parameter holds a character that text cannot hold (NUL).",
            param=None,
        )
        return _json(400, body)
    if not is_database_unavailable(error):
        return await _unexpected_error(request, error)
    logger.warning("database unavailable: %s", error)
    body = error_body(
        error_type="api_error",
        code="database_unavailable",
        message="The database is unavailable; retry shortly.",
        param=None,
    )
    return _json(503, body, headers={"Retry-After": "1"})


async def _unexpected_error(_: Request, error: Exception) -> JSONResponse:
    # A bug by definition: logged with its traceback, answered in the standard shape.
    logger.error("unhandled error", exc_info=error)
    body = error_body(
        error_type="api_error",
        code="internal_error",
        message="Something went wrong on our side; it has been logged.",
        param=None,
    )
    return _json(500, body)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AmplyError, _amply_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(OSError, _database_error)
    app.add_exception_handler(Exception, _unexpected_error)
