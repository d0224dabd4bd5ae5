"""Schemathesis fuzzes every operation of the app's OpenAPI document.

No response may be a 5xx; each must have a status code, content type and body that the
document declares for the operation; and every 4xx/5xx must be JSON in the one error shape of
SPEC.md §3.

Each operation gets a fresh copy of one small world, built once per module into a template
database: an owner with an onboarded organisation, an API key, a fund and a member; a completed
and a pending donation; a second session; a transfer awaiting confirmation; a money request to
the owner and one from the owner; a card, a confirmed and an unconfirmed SetupIntent; a pending
card deposit and a pending withdrawal. It then gets a fixed batch of generated requests, valid
ones and invalid ones, sent as the owner (sometimes with the organisation's API key). Path
parameters, headers and body fields that name something are the world's real values most of
the time, so requests get past 404 into validation and business logic. Money-moving POSTs
mostly carry a fresh Idempotency-Key.

The requests are generated up front (Hypothesis, derandomized: the same requests on every run,
no example database) and only then sent through the test's own async client. The world changes
as they run (a logout ends the session), so Hypothesis could not replay and shrink a failing
example against the same state. A failure names the operation and prints a curl command that
reproduces it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date, time
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from amply.kit.db import Database
from amply.kit.settings import Settings
from amply.ledger.service import PLATFORM_FEES_CHAIN, PLATFORM_PROMOTIONS_CHAIN
from amply.main import create_app
from tests.conftest import Cluster, app_client, cheapest_settings, fresh_database
from tests.factories import (
    PASSWORD,
    Account,
    add_member,
    bearer,
    create_api_key,
    create_fund,
    create_organisation,
    donate,
    fund_wallet,
    onboard,
    sandbox_succeed,
    sign_up,
    wallet_id_of,
)

BASE_URL = "https://amply.test"
# Generated requests per operation: valid ones (by the document), then invalid ones (which
# cost about eight times as much to generate).
POSITIVE_EXAMPLES = 12
NEGATIVE_EXAMPLES = 3


def _app_settings() -> Settings:
    # So that the webhook checks signatures rather than answering that it is not set up.
    return cheapest_settings(stripe_webhook_secret="whsec_openapi_fuzz")


# RFC 3339 date-times as schemathesis generates them, but with the first and last dates a
# datetime holds drawn often: an offset then carries the instant out of its range in UTC.
schemathesis.openapi.format(
    "date-time",
    st.builds(
        "{}T{}{}".format,
        (st.dates() | st.sampled_from([date.min, date.max])).map(date.isoformat),
        st.times().map(time.isoformat),
        st.just("Z")
        | st.builds(
            "{}{:02d}:{:02d}".format, st.sampled_from("+-"), st.integers(0, 23), st.integers(0, 59)
        ),
    ),
)


def _schema() -> schemathesis.BaseSchema:
    app = create_app(_app_settings(), database_url="postgresql://unused/amply")
    return schemathesis.openapi.from_dict(app.openapi())


SCHEMA = _schema()
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


# --- The world ------------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    owner: Account
    api_key: str
    # Real values, by the name of the path parameter, header or body field they fill.
    values: dict[str, list[Any]]


async def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def _build_world(client: httpx.AsyncClient, database: Database) -> World:
    owner, friend = await sign_up(client), await sign_up(client)
    organisation_id = await create_organisation(client, owner)
    key_id, secret = await create_api_key(client, owner, organisation_id)
    await onboard(client, owner, organisation_id)
    fund_id = await create_fund(client, owner, organisation_id)
    await add_member(client, owner, organisation_id, friend, "viewer")
    succeeded = await donate(client, organisation_id, fund_id=fund_id)
    await sandbox_succeed(client, succeeded)
    pending = await donate(client, organisation_id)
    await fund_wallet(database, await wallet_id_of(database, owner.user_id), 50_000)
    # A second session of the owner's, for the route that ends one.
    login = await _ok(
        await client.post(
            "/v1/auth/login",
            json={"login": owner.username, "password": PASSWORD, "session_type": "token"},
        )
    )
    keys = (f"fuzz-world-key-{n:08d}" for n in itertools.count())

    def keyed(account: Account) -> dict[str, str]:
        return {**account.headers, "Idempotency-Key": next(keys)}

    transfer = await _ok(  # the first to this recipient: it waits for confirmation
        await client.post(
            "/v1/transfers",
            json={"recipient": friend.username, "amount": 100, "description": "Lunch"},
            headers=keyed(owner),
        )
    )
    asked_of_owner, asked_by_owner = [
        await _ok(
            await client.post(
                "/v1/requests",
                json={"payer": payer.username, "amount": 200, "description": "Tickets"},
                headers=requester.headers,
            )
        )
        for requester, payer in ((friend, owner), (owner, friend))
    ]

    async def setup_intent(*, confirm: bool) -> str:
        intent = await _ok(await client.post("/v1/cards/setup-intents", headers=owner.headers))
        setup_intent_id: str = intent["setup_intent_id"]
        if confirm:
            await _ok(
                await client.post(
                    f"/v1/sandbox/setup-intents/{setup_intent_id}/succeed",
                    json={"card": "visa"},
                    headers=owner.headers,
                )
            )
        return setup_intent_id

    card = await _ok(
        await client.post(
            "/v1/cards",
            json={"setup_intent_id": await setup_intent(confirm=True)},
            headers=owner.headers,
        )
    )
    # Confirmed but not yet saved as a card; and not yet confirmed.
    confirmed, unconfirmed = await setup_intent(confirm=True), await setup_intent(confirm=False)
    deposit = await _ok(
        await client.post(
            "/v1/deposits", json={"source": "card", "amount": 700}, headers=keyed(owner)
        )
    )
    withdrawal = await _ok(
        await client.post(
            "/v1/withdrawals",
            json={"amount": 300, "bank_name": "First Community Bank"},
            headers=keyed(owner),
        )
    )
    values: dict[str, list[Any]] = {
        # Path parameters
        "organisation_id": [organisation_id],
        "key_id": [key_id],
        "fund_id": [fund_id],
        "user_id": [friend.user_id],
        "session_id": [login["session"]["id"]],
        "donation_id": [succeeded["donation"]["id"], pending["donation"]["id"]],
        "payment_id": [pending["payment"]["payment_intent_id"], deposit["payment_intent_id"]],
        "transfer_id": [transfer["id"]],
        "request_id": [asked_of_owner["id"], asked_by_owner["id"]],
        "transaction_id": [transfer["id"], deposit["id"], withdrawal["id"]],
        "card_id": [card["id"]],
        "setup_intent_id": [unconfirmed, confirmed],
        "deposit_id": [deposit["id"]],
        "withdrawal_id": [withdrawal["id"]],
        "chain_id": [PLATFORM_FEES_CHAIN, PLATFORM_PROMOTIONS_CHAIN],
        # Headers
        "X-Receipt-Token": [succeeded["receipt_token"]],
        # Body fields
        "login": [owner.username, owner.email],
        "password": [PASSWORD],
        "current_password": [PASSWORD],
        "recipient": [friend.username],
        "payer": [friend.username],
        "username": [friend.username],
        "amount": [50, 150, 2500],
        "currency": ["EUR", "USD"],
    }
    return World(owner=owner, api_key=secret, values=values)


@dataclass(frozen=True)
class WorldTemplate:
    database: str
    world: World


@pytest.fixture(scope="module")
def world_template(cluster: Cluster) -> Iterator[WorldTemplate]:
    """The world, built once into a database that each test copies."""
    with fresh_database(cluster) as template:

        async def build() -> World:
            database = Database(template.urls.app)
            try:
                async with app_client(_app_settings(), database_url=template.urls.app) as client:
                    return await _build_world(client, database)
            finally:
                await database.dispose()

        # Its own event loop: the pools close before the database becomes a template.
        yield WorldTemplate(database=template.name, world=asyncio.run(build()))


@pytest.fixture
async def world_client(
    cluster: Cluster, world_template: WorldTemplate
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app on this test's own copy of the world."""
    with fresh_database(cluster, template=world_template.database) as copy:
        # A bug's 500 comes back as a response, for the checks to report with the others.
        async with app_client(
            _app_settings(), database_url=copy.urls.app, raise_app_exceptions=False
        ) as client:
            yield client


# --- Checks ---------------------------------------------------------------------------------


def error_shape(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """SPEC.md §3: every error with a JSON body is ``{"error": {type, code, message, param}}``."""
    if response.status_code < 400:
        return None
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.startswith("application/json"), f"error content type: {content_type}"
    body = response.json()
    assert isinstance(body, dict), f"the error body is not an object: {body!r}"
    assert set(body) == {"error"}, f"the error body's keys are {sorted(body)}, not ['error']"
    error = body["error"]
    assert isinstance(error, dict), f"`error` is not an object: {error!r}"
    assert set(error) == {"type", "code", "message", "param"}, f"error keys: {sorted(error)}"
    for name in ("type", "code", "message"):
        assert isinstance(error[name], str), f"error.{name} is not a string: {error[name]!r}"
        assert error[name], f"error.{name} is empty"
    assert error["param"] is None or isinstance(error["param"], str), error["param"]
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    error_shape,
]


# --- Requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    case: Case
    # Sent with the organisation's API key rather than the owner's session.
    as_api_key: bool


def _generate(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    examples: int,
    world: World,
    idempotency_keys: Iterator[str],
) -> list[Planned]:
    """Generated requests of one mode, pointed at the world's real values most of the time."""
    strategy = operation.as_strategy(generation_mode=mode)
    takes_key = any(parameter.name == "Idempotency-Key" for parameter in operation.headers)
    takes_api_key = "{organisation_id}" in operation.path or operation.path.startswith(
        "/v1/donations"
    )
    planned: list[Planned] = []

    @hypothesis_settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def collect(data: st.DataObject) -> None:
        case: Case = data.draw(strategy)
        containers = [case.path_parameters, case.query, case.headers]
        if isinstance(case.body, dict):
            containers.append(case.body)
        for container in containers:
            for name in [name for name in world.values if name in (container or {})]:
                # Mostly real values, so that requests reach the business logic.
                if data.draw(st.integers(0, 3), label=f"real {name}") > 0:
                    container[name] = data.draw(st.sampled_from(world.values[name]))
        if takes_key and data.draw(st.integers(0, 3), label="Idempotency-Key") > 0:
            case.headers["Idempotency-Key"] = next(idempotency_keys)
        as_api_key = takes_api_key and data.draw(st.integers(0, 3), label="api key") == 0
        planned.append(Planned(case, as_api_key))

    collect()
    return planned


# What a parameter's schema may say without constraining its value.
_ANNOTATIONS = frozenset({"type", "title", "description", "examples"})


def _can_be_invalid(operation: schemathesis.APIOperation) -> bool:
    """Whether anything the operation takes can be made invalid: not so for an operation
    that takes only unconstrained text in its path (Hypothesis would try a while to find out)."""
    if operation.body or list(operation.query) or list(operation.headers):
        return True
    return any(
        set(parameter.definition["schema"]) - _ANNOTATIONS
        or parameter.definition["schema"].get("type") != "string"
        for parameter in operation.path_parameters
    )


def _plan(operation: schemathesis.APIOperation, world: World) -> list[Planned]:
    """The operation's requests: valid ones (by the document), then invalid ones."""
    idempotency_keys = (f"fuzz-idempotency-key-{n:08d}" for n in itertools.count())
    planned = _generate(
        operation, GenerationMode.POSITIVE, POSITIVE_EXAMPLES, world, idempotency_keys
    )
    if _can_be_invalid(operation):
        negative = _generate(
            operation, GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES, world, idempotency_keys
        )
        assert negative, f"no invalid requests for {operation.label}"
        planned += negative
    return planned


async def _send(
    client: httpx.AsyncClient, case: Case, credentials: dict[str, str]
) -> httpx.Response:
    """The case as schemathesis would send it (its requests transport's kwargs), via httpx."""
    kwargs = case.as_transport_kwargs(base_url=BASE_URL)
    headers = {str(name): str(value) for name, value in kwargs["headers"].items()}
    headers.update(credentials)
    if cookies := kwargs.get("cookies"):
        headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in cookies.items())
    params = {
        name: value for name, value in (kwargs.get("params") or {}).items() if value is not None
    }
    request = client.build_request(
        kwargs["method"],
        kwargs["url"],
        headers=headers,
        params=params,
        json=kwargs.get("json"),
        content=kwargs.get("data"),
    )
    return await client.send(request)


@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
async def test_every_response_is_declared_and_no_error_is_a_500(
    world_client: httpx.AsyncClient,
    world_template: WorldTemplate,
    operation: schemathesis.APIOperation,
) -> None:
    world = world_template.world
    failures: list[str] = []
    for planned in _plan(operation, world):
        credentials = bearer(world.api_key) if planned.as_api_key else world.owner.headers
        response = await _send(world_client, planned.case, credentials)
        try:
            planned.case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            failures.append(str(group))
    assert not failures, f"{len(failures)} failing requests; the first:\n\n" + "\n".join(
        failures[:3]
    )
