"""``amply demo``: a realistic demo in a fresh (or the embedded) database, made through the
API's own paths in sandbox mode, so that every chain it writes verifies.

Three organisations, each with funds and a few dozen donations from named and anonymous
donors (some with messages, a few that fail), partial and full refunds, and a dispute; six
people whose wallets (with the demo welcome bonus) send each other money, one transfer held
for confirmation and one left held, money requests paid, declined and left open, and gifts
from wallets to the organisations.

The ledger's ``created_at`` is assigned by the database, so the demo cannot backdate
anything: "months of giving" is a history made now, and each donation's message names the
month it stands for. The demo is idempotent: it marks nothing, but a second run finds its
first user and prints the demo that is there instead of adding another.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
from sqlalchemy import select

from amply.donations import service as donation_service
from amply.kit.ids import sandbox_id
from amply.kit.settings import Settings
from amply.ledger import service as ledger
from amply.models import LedgerChain
from amply.models.enums import StripeEventSource
from amply.webhooks import sandbox as sandbox_service
from amply.webhooks import stripe_events

PASSWORD: Final = "demo horse battery staple"  # noqa: S105 - printed for the demo users
PEOPLE: Final = (
    ("Amara Okafor", "amara"),
    ("Bruno Costa", "bruno"),
    ("Chen Wei", "chen"),
    ("Dana Levi", "dana"),
    ("Eli Novak", "eli"),
    ("Farah Haddad", "farah"),
)
ORGANISATIONS: Final = (
    # name, slug, country, currency, owner, funds
    ("Clean Rivers", "demo-clean-rivers", "DE", "EUR", "amara", ("River clean-up", "Water tests")),
    ("Open Library", "demo-open-library", "GB", "GBP", "bruno", ("New books", "Reading hours")),
    ("Night Shelter", "demo-night-shelter", "US", "USD", "amara", ("Winter beds",)),
)
MONTHS: Final = ("July", "August", "September", "October", "November", "December")
DONORS: Final = (
    "Grace",
    "Alan",
    "Katherine",
    "Margaret",
    "Tim",
    "Radia",
    "Barbara",
    "Edsger",
    "Frances",
    "Donald",
)


class DemoRefused(Exception):
    """The demo cannot run here (live Stripe keys: no sandbox)."""


@dataclass
class Demo:
    """What the demo made, for its summary."""

    organisations: dict[str, str] = field(default_factory=dict)  # slug: id
    donations: int = 0
    refunds: int = 0
    disputes: int = 0
    transfers: int = 0
    requests: int = 0
    gifts: int = 0
    verdicts: dict[str, str] = field(default_factory=dict)  # chain: verdict
    broken: int = 0
    existed: bool = False

    def summary(self, base: str = "http://127.0.0.1:8000") -> str:
        made = "was already in this database" if self.existed else "is ready"
        lines = [f"The demo {made}:"]
        if not self.existed:
            lines.append(
                f"  {self.donations} donations ({self.refunds} refunds, {self.disputes} "
                f"dispute), {self.transfers} transfers, {self.requests} money requests, "
                f"{self.gifts} gifts from wallets"
            )
        for slug, organisation_id in self.organisations.items():
            lines.append(f"  {slug}: {base}/v1/public/organisations/{organisation_id}")
        lines.append(
            f"  every chain verifies ({len(self.verdicts)} chains)"
            if not self.broken
            else f"  {self.broken} of {len(self.verdicts)} chains do NOT verify"
        )
        users = ", ".join(username for _, username in PEOPLE)
        lines += [
            f"  users {users}, each with the password {PASSWORD!r}",
            f"Serve it (amply serve) and open {base}/docs, or try {base}/v1/public/organisations",
        ]
        return "\n".join(lines)


def run_demo(settings: Settings, *, database_url: str) -> Demo:
    """Fill the database at ``database_url`` (the service role's URL): what it made."""
    if not settings.sandbox_mode:
        raise DemoRefused(
            "amply demo needs sandbox mode: unset AMPLY_STRIPE_SECRET_KEY (the demo makes "
            "sandbox payments, never real ones)."
        )
    return asyncio.run(_run(settings, database_url))


async def _run(settings: Settings, database_url: str) -> Demo:
    from amply.main import create_app

    # The demo is one client making many checkouts for a few donors: the velocity limits
    # are for strangers.
    app = create_app(
        settings.model_copy(
            update={"checkout_max_per_address": 1_000_000, "checkout_max_per_email": 1_000_000}
        ),
        database_url=database_url,
    )
    # From an address of its own (TEST-NET-3), so that its checkouts and logins count
    # against no real client's limits.
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://demo.local") as http:
            return await _Builder(http, app).build()
    finally:
        await app.state.database.dispose()


class _Builder:
    def __init__(self, http: httpx.AsyncClient, app: Any) -> None:
        self.http = http
        self.app = app
        self.demo = Demo()
        self.tokens: dict[str, str] = {}
        self.random = random.Random(20)  # noqa: S311 - the same demo every time
        self.keys = itertools.count(1)

    async def call(
        self, method: str, path: str, *, user: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        headers = dict(kwargs.pop("headers", {}))
        if user is not None:
            headers["Authorization"] = f"Bearer {self.tokens[user]}"
        if method == "POST":
            headers.setdefault("Idempotency-Key", f"amply-demo-{time.time_ns()}-{next(self.keys)}")
        response = await self.http.request(method, path, headers=headers, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        answer: dict[str, Any] = response.json()
        return answer

    async def build(self) -> Demo:
        if await self._already_there():
            self.demo.existed = True
            await self._find_organisations()
            return self.demo
        for name, username in PEOPLE:
            signed_up = await self.call(
                "POST",
                "/v1/auth/signup",
                json={
                    "name": name,
                    "username": username,
                    "email": f"{username}@demo.amply.example",
                    "password": PASSWORD,
                    "session_type": "token",
                },
            )
            self.tokens[username] = signed_up["session"]["token"]
        for organisation in ORGANISATIONS:
            await self._organisation(*organisation)
        await self._wallets()
        await self._verify()
        return self.demo

    async def _already_there(self) -> bool:
        response = await self.http.post(
            "/v1/auth/login",
            json={"login": PEOPLE[0][1], "password": PASSWORD, "session_type": "token"},
        )
        return response.status_code == 200

    async def _find_organisations(self) -> None:
        for _, slug, *_ in ORGANISATIONS:
            found = await self.call("GET", "/v1/public/organisations", params={"search": slug})
            for item in found.get("data", []):
                if item.get("slug") == slug:
                    self.demo.organisations[slug] = item["id"]
        await self._verify()

    async def _organisation(
        self,
        name: str,
        slug: str,
        country: str,
        currency: str,
        owner: str,
        funds: tuple[str, ...],
    ) -> None:
        created = await self.call(
            "POST",
            "/v1/organisations",
            user=owner,
            json={
                "name": name,
                "slug": slug,
                "country": country,
                "default_currency": currency,
                "description": f"{name}: a demo organisation made by amply demo.",
            },
        )
        organisation_id: str = created["organisation"]["id"]
        self.demo.organisations[slug] = organisation_id
        base = f"/v1/organisations/{organisation_id}"
        await self.call("POST", f"{base}/stripe-account", user=owner)
        fund_ids = [
            (
                await self.call(
                    "POST",
                    f"{base}/funds",
                    user=owner,
                    json={"name": fund, "goal": {"amount": 500_000, "currency": currency}},
                )
            )["id"]
            for fund in funds
        ]
        completed: list[tuple[str, str, int]] = []  # donation, payment, amount
        for month, donor in itertools.product(MONTHS, DONORS[: 4 + len(slug) % 4]):
            amount = self.random.choice((500, 1000, 1500, 2500, 5000, 10000, 20000))
            body: dict[str, Any] = {
                "organisation_id": organisation_id,
                "amount": amount,
                "currency": currency,
                "donor_name": donor,
                "donor_email": f"{donor.lower()}@donors.example",
                "anonymous": self.random.random() < 0.3,
                "message": f"{month}: keep it up!",
            }
            if self.random.random() < 0.6:
                body["fund_id"] = self.random.choice(fund_ids)
            checkout = await self.call("POST", "/v1/donations", json=body)
            payment = checkout["payment"]["payment_intent_id"]
            outcome = "fail" if self.random.random() < 0.08 else "succeed"
            await self.call("POST", f"/v1/sandbox/payments/{payment}/{outcome}")
            self.demo.donations += 1
            if outcome == "succeed":
                completed.append((checkout["donation"]["id"], payment, amount))
        # Refunds: one in full, one in part, confirmed by the (sandbox) payment provider.
        for (donation, payment, amount), part in zip(completed[1:3], (1, 2), strict=True):
            await self.call(
                "POST",
                f"/v1/donations/{donation}/refunds",
                user=owner,
                json={"amount": amount // part, "reason": "requested_by_customer"},
            )
            await self.call("POST", f"/v1/sandbox/payments/{payment}/refund", user=owner)
            self.demo.refunds += 1
        # A dispute: the card's owner disputes a donation, as Stripe's event would say.
        await self._dispute(completed[-1][1])

    async def _dispute(self, payment_intent_id: str) -> None:
        database = self.app.state.database
        async with database.session() as session:
            donation = await donation_service.find_by_payment_intent(
                session, payment_intent_id=payment_intent_id
            )
            assert donation is not None
            dispute_id = f"du_sandbox_{secrets.token_hex(12)}"
            withdrawal = await sandbox_service.dispute_withdrawal(
                session, donation, dispute_id=dispute_id
            )
            dispute = {
                "id": dispute_id,
                "object": "dispute",
                "amount": donation.amount,
                "currency": donation.currency.lower(),
                "charge": payment_intent_id.replace("pi_", "ch_", 1),
                "payment_intent": payment_intent_id,
                "reason": "fraudulent",
                "status": "needs_response",
                "balance_transactions": [withdrawal],
            }
            event_id, created = sandbox_id("evt"), int(time.time())
            event = stripe_events.Event(
                id=event_id,
                type="charge.dispute.created",
                account=donation.stripe_account_id,
                livemode=False,
                created=created,
                object=dispute,
                payload={
                    "id": event_id,
                    "object": "event",
                    "type": "charge.dispute.created",
                    "account": donation.stripe_account_id,
                    "livemode": False,
                    "created": created,
                    "api_version": "sandbox",
                    "data": {"object": dispute},
                },
            )
            await stripe_events.process(
                session,
                event=event,
                source=StripeEventSource.SANDBOX,
                gateway=self.app.state.gateway,
            )
            await session.commit()
        self.demo.disputes += 1

    async def _wallets(self) -> None:
        amara, bruno, chen, dana, eli, farah = (username for _, username in PEOPLE)
        # Transfers: a first transfer to someone is held until its sender confirms it.
        for sender, recipient, amount, what in (
            (chen, dana, 1250, "Lunch"),
            (dana, eli, 800, "Cinema tickets"),
            (eli, farah, 2000, "Concert"),
            (farah, chen, 450, "Coffee"),
            (bruno, amara, 3000, "Shared taxi"),
        ):
            transfer = await self.call(
                "POST",
                "/v1/transfers",
                user=sender,
                json={"recipient": recipient, "amount": amount, "description": what},
            )
            if transfer["status"] == "pending_confirmation":
                await self.call("POST", f"/v1/transfers/{transfer['id']}/confirm", user=sender)
            self.demo.transfers += 1
        # Again to someone known: no hold.
        await self.call(
            "POST",
            "/v1/transfers",
            user=chen,
            json={"recipient": dana, "amount": 300, "description": "Snacks"},
        )
        # One left held: a new recipient, waiting for the sender's confirmation.
        await self.call(
            "POST",
            "/v1/transfers",
            user=dana,
            json={"recipient": bruno, "amount": 1500, "description": "Book club"},
        )
        self.demo.transfers += 2
        # Money requests: one paid, one declined, one left open.
        paid = await self.call(
            "POST",
            "/v1/requests",
            user=farah,
            json={"payer": eli, "amount": 600, "description": "Pizza"},
        )
        await self.call("POST", f"/v1/requests/{paid['id']}/pay", user=eli)
        declined = await self.call(
            "POST",
            "/v1/requests",
            user=amara,
            json={"payer": chen, "amount": 900, "description": "Train tickets"},
        )
        await self.call("POST", f"/v1/requests/{declined['id']}/decline", user=chen)
        await self.call(
            "POST",
            "/v1/requests",
            user=bruno,
            json={"payer": farah, "amount": 700, "description": "Museum entry"},
        )
        self.demo.requests += 3
        # Gifts from wallets to the organisations' public chains, named or anonymous.
        organisations = list(self.demo.organisations.values())
        for (giver, amount), organisation_id in zip(
            ((chen, 500), (dana, 1000), (eli, 250), (farah, 1500)),
            itertools.cycle(organisations),
            strict=False,
        ):
            await self.call(
                "POST",
                "/v1/wallet/donations",
                user=giver,
                json={
                    "organisation_id": organisation_id,
                    "amount": amount,
                    "anonymous": giver in (dana, eli),
                },
            )
            self.demo.gifts += 1

    async def _verify(self) -> None:
        """Verify every chain in the database, as the public verify endpoint does."""
        async with self.app.state.database.session() as session:
            chain_ids = await session.scalars(select(LedgerChain.id).order_by(LedgerChain.id))
            for chain_id in list(chain_ids):
                result = await ledger.verify_chain(session, chain_id=chain_id)
                self.demo.verdicts[chain_id] = result.verdict()
                self.demo.broken += not result.ok
