"""An organisation's designated funds (admins manage them; members and API keys read)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status
from sqlalchemy.ext.asyncio import AsyncSession

from amply.deps import OrgAccess, OrgMemberOrApiKey, SessionDep
from amply.donations.schemas import FundCreate, FundOut, FundTotalOut, FundUpdate, GoalOut
from amply.kit.error_responses import error_responses
from amply.kit.schemas import Limit, ListResponse, StartingAfter
from amply.models import Fund
from amply.organisations import funds
from amply.organisations.funds import FundTotal, Goal

router = APIRouter(prefix="/organisations/{organisation_id}/funds", tags=["funds"])

Viewer = Annotated[OrgAccess, OrgMemberOrApiKey("viewer", "read")]
Admin = Annotated[OrgAccess, OrgMemberOrApiKey("admin", "write")]
FundId = Annotated[str, Path(max_length=64, description="The fund's id (`fund_…`).")]


def fund_out(fund: Fund, totals: list[FundTotal]) -> FundOut:
    goal = None
    if fund.goal_amount is not None and fund.goal_currency is not None:
        goal = GoalOut(amount=fund.goal_amount, currency=fund.goal_currency)
    return FundOut(
        id=fund.id,
        organisation_id=fund.organisation_id,
        name=fund.name,
        description=fund.description,
        goal=goal,
        status=fund.status,
        totals=[
            FundTotalOut(
                currency=t.currency,
                received=t.received,
                refunded=t.refunded,
                net=t.received - t.refunded,
                donations=t.donations,
            )
            for t in totals
        ],
        created_at=fund.created_at,
        updated_at=fund.updated_at,
    )


async def _with_totals(session: AsyncSession, fund: Fund) -> FundOut:
    totals = await funds.totals(session, fund_ids=[fund.id])
    return fund_out(fund, totals[fund.id])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a fund",
    responses=error_responses(401, 403, 404, 409, 422),
)
async def create_fund(body: FundCreate, access: Admin, session: SessionDep) -> FundOut:
    fund = await funds.create_fund(
        session,
        organisation_id=access.organisation.id,
        name=body.name,
        description=body.description,
        goal=Goal(body.goal.amount, body.goal.currency) if body.goal else None,
    )
    await session.refresh(fund)
    return fund_out(fund, [])


@router.get("", summary="The organisation's funds", responses=error_responses(401, 403, 404))
async def list_funds(
    access: Viewer, session: SessionDep, limit: Limit = 20, starting_after: StartingAfter = None
) -> ListResponse[FundOut]:
    page = await funds.list_funds(
        session, organisation_id=access.organisation.id, starting_after=starting_after, limit=limit
    )
    totals = await funds.totals(session, fund_ids=[fund.id for fund in page.items])
    return ListResponse(
        data=[fund_out(fund, totals[fund.id]) for fund in page.items], has_more=page.has_more
    )


@router.get("/{fund_id}", summary="A fund and its totals", responses=error_responses(401, 403, 404))
async def get_fund(fund_id: FundId, access: Viewer, session: SessionDep) -> FundOut:
    fund = await funds.get_fund(session, organisation_id=access.organisation.id, fund_id=fund_id)
    return await _with_totals(session, fund)


@router.patch(
    "/{fund_id}",
    summary="Change a fund, or close it to new donations",
    responses=error_responses(401, 403, 404, 409, 422),
)
async def update_fund(
    fund_id: FundId, body: FundUpdate, access: Admin, session: SessionDep
) -> FundOut:
    fund = await funds.get_fund(session, organisation_id=access.organisation.id, fund_id=fund_id)
    fund = await funds.update_fund(
        session,
        fund,
        name=body.name,
        description=body.description,
        goal=Goal(body.goal.amount, body.goal.currency) if body.goal else None,
        remove_goal="goal" in body.model_fields_set and body.goal is None,
        status=body.status,
    )
    return await _with_totals(session, fund)
