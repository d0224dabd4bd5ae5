"""An organisation's designated funds, and what each has received.

A fund's totals are computed from its donations (completed or since refunded), per
currency: received, refunded and the count of donations. Ledger entries carry the fund id
too, so an auditor can recompute the same totals from the public chain.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from amply.kit.db import constraint_name
from amply.kit.errors import Conflict, NotFound
from amply.kit.ids import generate_id
from amply.kit.pagination import Page, keyset_page
from amply.models import Donation, Fund
from amply.models.enums import FundStatus

COUNTED_STATUSES = ("completed", "refunded")


@dataclass(frozen=True, slots=True)
class FundTotal:
    currency: str
    received: int
    refunded: int
    donations: int


@dataclass(frozen=True, slots=True)
class Goal:
    amount: int
    currency: str


async def create_fund(
    session: AsyncSession,
    *,
    organisation_id: str,
    name: str,
    description: str,
    goal: Goal | None,
) -> Fund:
    fund = Fund(
        id=generate_id("fund"),
        organisation_id=organisation_id,
        name=name,
        description=description,
        goal_amount=goal.amount if goal else None,
        goal_currency=goal.currency if goal else None,
        status="open",
    )
    session.add(fund)
    await _flush_unique_name(session)
    return fund


async def _flush_unique_name(session: AsyncSession) -> None:
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as error:
        if constraint_name(error) == "funds_organisation_name_key":
            raise Conflict(
                "This organisation already has a fund of that name.",
                code="fund_name_taken",
                param="name",
            ) from error
        raise


async def get_fund(session: AsyncSession, *, organisation_id: str, fund_id: str) -> Fund:
    fund = await session.scalar(
        select(Fund).where(Fund.id == fund_id, Fund.organisation_id == organisation_id)
    )
    if fund is None:
        raise NotFound("No such fund.", param="fund_id")
    return fund


async def update_fund(
    session: AsyncSession,
    fund: Fund,
    *,
    name: str | None = None,
    description: str | None = None,
    goal: Goal | None = None,
    remove_goal: bool = False,
    status: FundStatus | None = None,
) -> Fund:
    if name is not None:
        fund.name = name
    if description is not None:
        fund.description = description
    if remove_goal:
        fund.goal_amount = fund.goal_currency = None
    elif goal is not None:
        fund.goal_amount, fund.goal_currency = goal.amount, goal.currency
    if status is not None:
        fund.status = status
    fund.updated_at = func.now()
    await _flush_unique_name(session)
    await session.refresh(fund)
    return fund


async def list_funds(
    session: AsyncSession, *, organisation_id: str, starting_after: str | None, limit: int
) -> Page[Fund]:
    return await keyset_page(
        session,
        select(Fund).where(Fund.organisation_id == organisation_id),
        key=[Fund.created_at, Fund.id],
        id_column=Fund.id,
        starting_after=starting_after,
        limit=limit,
    )


async def totals(session: AsyncSession, *, fund_ids: list[str]) -> dict[str, list[FundTotal]]:
    """Per fund, per currency: gross received, refunded, and the number of donations."""
    rows = await session.execute(
        select(
            Donation.fund_id,
            Donation.currency,
            func.sum(Donation.amount),
            func.sum(Donation.amount_refunded),
            func.count(),
        )
        .where(Donation.fund_id.in_(fund_ids), Donation.status.in_(COUNTED_STATUSES))
        .group_by(Donation.fund_id, Donation.currency)
        .order_by(Donation.fund_id, Donation.currency)
    )
    result: dict[str, list[FundTotal]] = {fund_id: [] for fund_id in fund_ids}
    for fund_id, currency, received, refunded, count in rows:
        assert fund_id is not None
        result[fund_id].append(
            FundTotal(
                currency=currency, received=int(received), refunded=int(refunded), donations=count
            )
        )
    return result
