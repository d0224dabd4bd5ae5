"""An organisation's designated funds (admins manage them; members and API keys read)."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Path, status
from sqlalchemy.ext.asyncio import AsyncSession

from amply.kit.dependencies import SessionDep
from amply.kit.error_responses import error_responses
from amply.kit.errors import ErrorCode
from amply.kit.schemas import Limit, ListResponse, StartingAfter
from amply.models import Fund
from amply.organisations import funds
from amply.organisations.access_responses import ORG_WRITER_ERRORS
from amply.organisations.dependencies import OrgAccess, OrgMemberOrApiKey
from amply.organisations.funds import Goal
from amply.organisations.schemas import FundCreate, FundOut, FundUpdate, fund_out

router = APIRouter(prefix="/organisations/{organisation_id}/funds", tags=["funds"])

Viewer = Annotated[OrgAccess, OrgMemberOrApiKey("viewer", "read")]
Admin = Annotated[OrgAccess, OrgMemberOrApiKey("admin", "write")]
FundId = Annotated[str, Path(max_length=64, description="The fund's id (`fund_…`).")]
WRITE_ERRORS: Final = error_responses(*ORG_WRITER_ERRORS, 422, ErrorCode.FUND_NAME_TAKEN)


async def _with_totals(session: AsyncSession, fund: Fund) -> FundOut:
    totals = await funds.totals(session, fund_ids=[fund.id])
    return fund_out(fund, totals[fund.id])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a fund",
    responses=WRITE_ERRORS,
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


@router.get("", summary="The organisation's funds", responses=error_responses(401, 403, 404, 422))
async def list_funds(
    access: Viewer, session: SessionDep, limit: Limit = 20, starting_after: StartingAfter = None
) -> ListResponse[FundOut]:
    page = await funds.list_funds(
        session, organisation_id=access.organisation.id, starting_after=starting_after, limit=limit
    )
    totals = await funds.totals(session, fund_ids=[fund.id for fund in page.items])
    return ListResponse.of(page, lambda fund: fund_out(fund, totals[fund.id]))


@router.get("/{fund_id}", summary="A fund and its totals", responses=error_responses(401, 403, 404))
async def get_fund(fund_id: FundId, access: Viewer, session: SessionDep) -> FundOut:
    fund = await funds.get_fund(session, organisation_id=access.organisation.id, fund_id=fund_id)
    return await _with_totals(session, fund)


@router.patch(
    "/{fund_id}",
    summary="Change a fund, or close it to new donations",
    responses=WRITE_ERRORS,
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
