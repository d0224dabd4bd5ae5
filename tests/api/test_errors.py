"""Every error, whatever raised it, reaches the client in the one shape of SPEC.md §3."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Body, FastAPI, Query

from amply.api.errors import install_error_handlers
from amply.errors import Conflict, InsufficientFunds
from amply.services.ledger import LedgerError


def build_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/conflict")
    async def conflict() -> None:
        raise Conflict("that name is taken", code="name_taken", param="name")

    @app.get("/funds")
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
        "code": "name_taken",
        "message": "that name is taken",
        "param": "name",
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
