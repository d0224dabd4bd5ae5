"""Request ids, the structured access log, and Prometheus metrics."""

from __future__ import annotations

import json
import logging
import uuid

import httpx
import pytest

from amply.kit.observability import JsonFormatter, configure_logging
from amply.kit.settings import Settings
from tests.conftest import ClientFactory
from tests.factories import donate, onboarded_organisation, sandbox_succeed, sign_up
from tests.wallets.test_transfers import befriend, send


async def test_a_request_gets_an_id_and_keeps_a_well_formed_one(
    client: httpx.AsyncClient,
) -> None:
    generated = (await client.get("/health")).headers["X-Request-ID"]
    assert len(generated) == 32
    assert int(generated, 16) >= 0
    given = "trace-4f2a:edge.1"
    assert (await client.get("/health", headers={"X-Request-ID": given})).headers[
        "X-Request-ID"
    ] == given
    for bad in ("has space", "x" * 129, 'quote"d'):
        answered = (await client.get("/health", headers={"X-Request-ID": bad})).headers
        assert answered["X-Request-ID"] != bad


async def test_each_request_logs_one_json_line_without_secrets(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    alice, bob = await sign_up(client), await sign_up(client)
    await befriend(client, alice, bob)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="amply.access"):
        transfer = await send(client, alice, bob, 100)
        await client.get("/v1/transfers/txn_nothing", headers=alice.headers)
    lines = [JsonFormatter().format(r) for r in caplog.records if r.name == "amply.access"]
    assert len(lines) == 2
    sent, not_found = (json.loads(line) for line in lines)
    assert sent["route"] == "/v1/transfers"
    assert (sent["method"], sent["status"], sent["caller"]) == ("POST", 201, "user")
    assert sent["latency_ms"] > 0
    assert len(sent["request_id"]) == 32
    assert not_found["route"] == "/v1/transfers/{transfer_id}"
    assert not_found["status"] == 404
    for line in lines:  # no token, email, username or id from the path
        for secret in (alice.token, alice.email, alice.username, transfer["id"], "txn_nothing"):
            assert secret not in line


async def test_api_keys_webhooks_and_anonymous_callers_are_told_apart(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="amply.access"):
        await client.get("/v1/public/organisations")
        await client.get("/nowhere")
    fields = [getattr(r, "fields", {}) for r in caplog.records if r.name == "amply.access"]
    assert [(f["caller"], f["route"], f["status"]) for f in fields] == [
        ("anonymous", "/v1/public/organisations", 200),
        ("anonymous", "unmatched", 404),
    ]


async def test_metrics_count_requests_ledger_appends_and_stripe_events(
    client: httpx.AsyncClient,
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    checkout = await donate(client, organisation_id)
    await sandbox_succeed(client, checkout)
    alice, bob = await sign_up(client), await sign_up(client)
    await befriend(client, alice, bob)
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for line in (
        'amply_http_requests_total{method="POST",route="/v1/transfers/{transfer_id}/confirm",'
        'status="200"}',
        'amply_http_request_duration_seconds_count{method="POST",route="/v1/transfers"}',
        'amply_ledger_entries_appended_total{chain_kind="wallet",entry_type="transfer_out"}',
        'amply_ledger_entries_appended_total{chain_kind="organisation",'
        'entry_type="donation_received"}',
        'amply_stripe_events_total{outcome="processed",source="sandbox",'
        'type="payment_intent.succeeded"}',
        'amply_db_pool_connections{state="checked_out"}',
    ):
        assert line in text, line


async def test_metrics_can_be_turned_off(make_client: ClientFactory, settings: Settings) -> None:
    async with make_client(settings.model_copy(update={"metrics_enabled": False})) as http:
        response = await http.get("/metrics")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "metrics_disabled"


def test_json_logging_routes_every_logger_through_one_line_format(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, uvicorn_error = logging.getLogger(), logging.getLogger("uvicorn.error")
    saved = (root.handlers[:], root.level, uvicorn_error.level)
    try:
        # As an in-process uvicorn.Config(log_level="warning") leaves it (the Stripe harness).
        uvicorn_error.setLevel(logging.WARNING)
        configure_logging(level="info", json_lines=True)
        marker = uuid.uuid4().hex
        logging.getLogger("uvicorn.error").info("started %s", marker)
        [line] = [x for x in capsys.readouterr().err.splitlines() if marker in x]
        record = json.loads(line)
        assert record["logger"] == "uvicorn.error"
        assert record["level"] == "info"
        assert record["message"] == f"started {marker}"
    finally:
        root.handlers[:], _, _ = saved
        root.setLevel(saved[1])
        uvicorn_error.setLevel(saved[2])
