"""The one place where errors become HTTP responses, all in the shape of SPEC.md §3."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.dependencies.utils import get_flat_params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute

from amply.kit.errors import (
    ERROR_STATUSES,
    UNIVERSAL_CODES,
    AmplyError,
    ErrorCode,
    error_body,
)

logger = logging.getLogger(__name__)

_TYPE_BY_STATUS = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
_CODE_BY_STATUS = {
    400: ErrorCode.INVALID_REQUEST,
    401: ErrorCode.AUTHENTICATION_REQUIRED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.RESOURCE_MISSING,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.BODY_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    429: ErrorCode.RATE_LIMITED,
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


@dataclass(frozen=True)
class Declared:
    """A code declared under a status other than its first (``ErrorCode.X.statuses``)."""

    status: int
    code: ErrorCode


def at(status: int, code: ErrorCode) -> Declared:
    """``code`` as a route answers it with ``status``, one of the code's statuses."""
    if status not in code.statuses:
        raise ValueError(f"{code} is not sent with {status}")
    return Declared(status, code)


class ErrorResponse(dict[str, Any]):
    """One status's entry of a route's ``responses=``, remembering the codes it declares (the
    error handlers check what a route answers against them)."""

    codes: tuple[ErrorCode, ...]


def error_responses(*declared: int | ErrorCode | Declared) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route's errors: each status it can answer, with the codes.

    An ``int`` declares a status with the codes any route answering it may send (``401``:
    every way credentials fail); an :class:`ErrorCode` declares that code under its status
    (``ErrorCode.SLUG_TAKEN`` under 409), and :func:`at` a code under another of its
    statuses. OpenAPI then describes each status with exactly the route's codes::

        responses=error_responses(401, 404, 422, ErrorCode.SLUG_TAKEN)
    """
    codes: dict[int, list[ErrorCode]] = {}
    for item in declared:
        if isinstance(item, ErrorCode):
            status, added = item.status, [item]
        elif isinstance(item, Declared):
            status, added = item.status, [item.code]
        else:
            status, added = item, list(ERROR_STATUSES.get(item, ("", ()))[1])
        listed = codes.setdefault(status, [])
        listed.extend(code for code in added if code not in listed)
    return {status: _error_response(status, listed) for status, listed in sorted(codes.items())}


def _error_response(status: int, codes: list[ErrorCode]) -> ErrorResponse:
    common = ERROR_STATUSES.get(status, ("Error.", ()))[1]
    meaning = ERROR_STATUSES.get(status, ("Error.", ()))[0]
    # The status's common codes first, in the registry's order, then the route's own.
    ordered = [code for code in common if code in codes] + [
        code for code in codes if code not in common
    ]
    listed = "; ".join(f"`{code}`: {code.meaning}" for code in ordered)
    description = f"{meaning} `error.code` is one of: {listed}." if ordered else meaning
    example_code = ordered[0] if ordered else ErrorCode.INVALID_REQUEST
    example = error_body(
        error_type=_TYPE_BY_STATUS.get(status, "invalid_request_error")
        if status < 500
        else "api_error",
        code=example_code,
        message=example_code.meaning if ordered else meaning,
        param=None,
    )
    response = ErrorResponse(
        description=description,
        content={"application/json": {"schema": ERROR_SCHEMA, "example": example}},
    )
    response.codes = tuple(ordered)
    return response


# What a route that takes an ``Idempotency-Key`` adds to its errors.
IDEMPOTENCY_ERRORS: tuple[ErrorCode, ...] = (
    ErrorCode.IDEMPOTENCY_KEY_INVALID,
    ErrorCode.IDEMPOTENCY_KEY_REUSED,
)

# What a route that calls the payment provider (Stripe) adds to its errors.
PROVIDER_ERRORS: tuple[ErrorCode, ...] = (
    ErrorCode.PAYMENT_PROVIDER_BUSY,
    ErrorCode.PAYMENT_PROVIDER_REFUSED,
    ErrorCode.PAYMENT_PROVIDER_ERROR,
    ErrorCode.PAYMENT_PROVIDER_UNAVAILABLE,
)


def declared_codes(route: object) -> frozenset[ErrorCode] | None:
    """The error codes ``route`` declares in its ``responses=``; None for a route that is
    not an API route (the site's pages, a mount), which declares none."""
    if not isinstance(route, APIRoute):
        return None
    codes: set[ErrorCode] = set()
    for response in route.responses.values():
        if isinstance(response, ErrorResponse):
            codes.update(response.codes)
    return frozenset(codes)


def _check_declared(request: Request, status: int, code: str) -> None:
    """Log ``undeclared_error_code`` when the matched route answers a code its ``responses=``
    does not list: harmless in production, a failed test in the suite (tests/conftest.py)."""
    declared = declared_codes(request.scope.get("route"))
    # A payment provider's own code (Stripe's `card_declined`) is declared as the refusal.
    registered = ErrorCode.of(code)
    if registered is None or status not in registered.statuses:
        registered = ErrorCode.PAYMENT_PROVIDER_REFUSED
    if declared is None or registered in declared or registered in UNIVERSAL_CODES:
        return
    route = request.scope["route"]
    logger.warning(
        "undeclared_error_code %s on %s %s",
        code,
        ",".join(sorted(route.methods)),
        route.path,
        extra={"undeclared_error_code": code, "route": route.path},
    )


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
        responses = dict(route.responses)  # a new dict: routes may share one mapping
        for status in (400, 422):
            declared = responses.get(status, responses.get(str(status)))
            if declared is None:
                responses.update(error_responses(status))
            elif isinstance(declared, ErrorResponse):
                # A route that names its own 422s answers the common ones too.
                common = ERROR_STATUSES[status][1]
                responses[status] = _error_response(status, [*common, *declared.codes])
        route.responses = responses


def _json(
    request: Request, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    _check_declared(request, status, body["error"]["code"])
    return JSONResponse(status_code=status, content=body, headers=headers)


async def _amply_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, AmplyError)
    if error.status_code == 500:
        # A domain error that means a bug upstream: its details are for the log, not the client.
        return await _unexpected_error(request, error)
    return _json(request, error.status_code, error.body(), headers=error.headers() or None)


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = error.errors()
    first = problems[0] if problems else {}
    if first.get("type") == "json_invalid":
        return _json(request, 400, _invalid_json_body())
    location = [str(part) for part in first.get("loc", ()) if part not in _LOCATIONS]
    param = ".".join(location) or None
    message = str(first.get("msg", "Invalid request."))
    if param:
        message = f"{param}: {message}"
    body = error_body(
        error_type="invalid_request_error",
        code=ErrorCode.PARAMETER_INVALID,
        message=message,
        param=param,
    )
    return _json(request, 422, body)


def _invalid_json_body() -> dict[str, Any]:
    return error_body(
        error_type="invalid_request_error",
        code=ErrorCode.BODY_INVALID_JSON,
        message="The request body is not valid JSON.",
        param=None,
    )


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    status = error.status_code
    if status == 400 and isinstance(error.__cause__, UnicodeDecodeError):
        # FastAPI's answer to a JSON body that is not UTF-8: the same mistake as bad JSON.
        return _json(request, 400, _invalid_json_body())
    body = error_body(
        error_type=_TYPE_BY_STATUS.get(status, "invalid_request_error"),
        code=_CODE_BY_STATUS.get(status, ErrorCode.INVALID_REQUEST),
        message=str(error.detail),
        param=None,
    )
    return _json(request, status, body, headers=dict(error.headers or {}))


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
            code=ErrorCode.PARAMETER_INVALID,
            message="A parameter holds a character that text cannot hold (NUL).",
            param=None,
        )
        return _json(request, 400, body)
    if not is_database_unavailable(error):
        return await _unexpected_error(request, error)
    logger.warning("database unavailable: %s", error)
    body = error_body(
        error_type="api_error",
        code=ErrorCode.DATABASE_UNAVAILABLE,
        message="The database is unavailable; retry shortly.",
        param=None,
    )
    return _json(request, 503, body, headers={"Retry-After": "1"})


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    # A bug by definition: logged with its traceback, answered in the standard shape.
    logger.error("unhandled error", exc_info=error)
    body = error_body(
        error_type="api_error",
        code=ErrorCode.INTERNAL_ERROR,
        message="Something went wrong on our side; it has been logged.",
        param=None,
    )
    return _json(request, 500, body)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AmplyError, _amply_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(OSError, _database_error)
    app.add_exception_handler(Exception, _unexpected_error)
