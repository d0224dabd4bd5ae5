"""Every error, whatever raised it, reaches the client in the one shape of SPEC.md §3."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Body, FastAPI, Query

from amply.kit.error_responses import (
    ERROR_SCHEMA,
    declare_request_errors,
    error_responses,
    install_error_handlers,
)
from amply.kit.errors import Conflict, ErrorCode, InsufficientFunds
from amply.kit.settings import Settings
from amply.ledger.service import LedgerError
from amply.main import create_app


def build_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/conflict", responses=error_responses(ErrorCode.SLUG_TAKEN))
    async def conflict() -> None:
        raise Conflict("that name is taken", code="slug_taken", param="slug")

    @app.get("/funds", responses=error_responses(ErrorCode.INSUFFICIENT_FUNDS))
    async def funds() -> None:
        raise InsufficientFunds("too little money")

    @app.get("/typed")
    async def typed(limit: Annotated[int, Query(ge=1)]) -> dict[str, int]:
        return {"limit": limit}

    @app.post("/body")
    async def body(amount: Annotated[int, Body(embed=True)]) -> dict[str, int]:
        return {"amount": amount}

    @app.get("/ledger-bug")
    async def ledger_bug() -> None:
        raise LedgerError("internal legs left over: {'EUR': 1}")

    @app.get("/bug")
    async def bug() -> None:
        raise RuntimeError("a bug")

    declare_request_errors(app.routes)
    return app


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://amply.test") as client:
        yield client


async def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"type", "code", "message", "param"}
    error: dict[str, Any] = body["error"]
    return error


async def test_domain_errors_carry_their_status_code_and_param(http: httpx.AsyncClient) -> None:
    error = await error_of(await http.get("/conflict"), 409)
    assert error == {
        "type": "invalid_request_error",
        "code": "slug_taken",
        "message": "that name is taken",
        "param": "slug",
    }
    assert (await error_of(await http.get("/funds"), 422))["code"] == "insufficient_funds"


async def test_invalid_parameters_name_the_parameter(http: httpx.AsyncClient) -> None:
    error = await error_of(await http.get("/typed", params={"limit": "zero"}), 422)
    assert (error["code"], error["param"]) == ("parameter_invalid", "limit")
    assert error["message"].startswith("limit: ")
    missing = await error_of(await http.get("/typed"), 422)
    assert missing["param"] == "limit"
    nested = await error_of(await http.post("/body", json={"amount": 1.5}), 422)
    assert nested["param"] == "amount"


async def test_malformed_json_is_a_400(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/body", content=b'{"amount": ', headers={"content-type": "application/json"}
    )
    error = await error_of(response, 400)
    assert error["code"] == "body_invalid_json"


async def test_a_json_body_that_is_not_utf8_is_invalid_json_too(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/body", content=b'{"amount": "\xff"}', headers={"content-type": "application/json"}
    )
    error = await error_of(response, 400)
    assert (error["code"], error["message"]) == (
        "body_invalid_json",
        "The request body is not valid JSON.",
    )


def test_every_route_that_reads_a_request_documents_its_400_and_422_in_the_error_shape() -> None:
    document = create_app(
        Settings(environment="test"), database_url="postgresql://unused/amply"
    ).openapi()
    reading = [
        (method, path, operation["responses"])
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if operation.get("parameters") or "requestBody" in operation
    ]
    assert len(reading) > 50
    for method, path, responses in reading:
        for status in ("400", "422"):
            content = responses[status]["content"]["application/json"]
            assert content["schema"] == ERROR_SCHEMA, (method, path, status)
    # FastAPI's own 422 body, `{"detail": [...]}`, is never sent: it is not documented either.
    assert "HTTPValidationError" not in document["components"]["schemas"]


async def test_wrong_method_is_a_405(http: httpx.AsyncClient) -> None:
    error = await error_of(await http.delete("/conflict"), 405)
    assert error["code"] == "method_not_allowed"


async def test_server_side_domain_errors_do_not_leak_their_details(
    http: httpx.AsyncClient,
) -> None:
    error = await error_of(await http.get("/ledger-bug"), 500)
    assert (error["type"], error["code"]) == ("api_error", "internal_error")
    assert "left over" not in error["message"]


async def test_a_bug_is_a_500_in_the_same_shape_without_details(http: httpx.AsyncClient) -> None:
    error = await error_of(await http.get("/bug"), 500)
    assert (error["type"], error["code"]) == ("api_error", "internal_error")
    assert "a bug" not in error["message"]
