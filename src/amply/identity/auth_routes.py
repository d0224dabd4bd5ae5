"""Sign-up, login, logout, the current user, password change, sessions and their events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from amply.auth import security_events
from amply.auth.dependencies import CurrentUser, OriginDep
from amply.auth.tokens import csrf_token
from amply.identity import auth
from amply.identity.auth import IssuedSession
from amply.identity.schemas import (
    AuthResponse,
    LoginRequest,
    PasswordChangeRequest,
    SessionSummary,
    SignUpRequest,
    UserOut,
    UserSecurityEventOut,
    session_out,
    session_summary,
)
from amply.kit.dependencies import SessionDep, SettingsDep
from amply.kit.error_responses import at, error_responses
from amply.kit.errors import ErrorCode
from amply.kit.schemas import Limit, ListResponse, StartingAfter
from amply.kit.settings import Settings
from amply.models import User

router = APIRouter(prefix="/auth", tags=["auth"])


def _hand_out(
    response: Response, settings: Settings, issued: IssuedSession, *, user: User, cookie: bool
) -> AuthResponse:
    """Give the new session to the client: as a cookie, or in the body for token sessions."""
    if cookie:
        response.set_cookie(
            settings.session_cookie_name,
            issued.token,
            max_age=settings.session_lifetime_seconds,
            path="/",
            secure=settings.secure_cookies,
            httponly=True,
            samesite="lax",
        )
    return AuthResponse(
        user=UserOut.model_validate(user),
        session=session_out(
            issued.record,
            settings,
            csrf=csrf_token(issued.token) if cookie else None,
            token=None if cookie else issued.token,
        ),
    )


def _clear_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        settings.session_cookie_name,
        path="/",
        secure=settings.secure_cookies,
        httponly=True,
        samesite="lax",
    )


@router.post(
    "/signup",
    status_code=status.HTTP_201_CREATED,
    summary="Create an account and sign in",
    responses=error_responses(
        409, 422, ErrorCode.EMAIL_TAKEN, ErrorCode.USERNAME_TAKEN, ErrorCode.PASSWORD_TOO_WEAK
    ),
)
async def sign_up(
    body: SignUpRequest,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    origin: OriginDep,
) -> AuthResponse:
    issued = await auth.sign_up(
        session,
        settings=settings,
        name=body.name,
        username=body.username,
        email=str(body.email),
        password=body.password,
        origin=origin,
    )
    user = await session.get_one(User, issued.record.user_id)
    return _hand_out(response, settings, issued, user=user, cookie=body.session_type == "cookie")


@router.post(
    "/login",
    summary="Sign in with username or email and password",
    responses=error_responses(ErrorCode.INVALID_CREDENTIALS, 422, 429, ErrorCode.LOGIN_THROTTLED),
)
async def log_in(
    body: LoginRequest,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    origin: OriginDep,
) -> AuthResponse:
    issued = await auth.log_in(
        session, settings=settings, login=body.login, password=body.password, origin=origin
    )
    user = await session.get_one(User, issued.record.user_id)
    return _hand_out(response, settings, issued, user=user, cookie=body.session_type == "cookie")


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End the current session",
    responses=error_responses(401, 403),
)
async def log_out(
    caller: CurrentUser, session: SessionDep, settings: SettingsDep, response: Response
) -> None:
    await auth.log_out(session, auth=caller.auth, origin=caller.origin)
    _clear_cookie(response, settings)


@router.get("/me", summary="The signed-in user and session", responses=error_responses(401))
async def me(caller: CurrentUser, settings: SettingsDep) -> AuthResponse:
    return AuthResponse(
        user=UserOut.model_validate(caller.user),
        session=session_out(caller.auth.session, settings, csrf=caller.csrf_token),
    )


@router.post(
    "/password",
    summary="Change the password; ends every session and starts a new one",
    responses=error_responses(
        401,
        403,
        422,
        at(422, ErrorCode.INVALID_CREDENTIALS),
        ErrorCode.PASSWORD_TOO_WEAK,
        429,
        ErrorCode.LOGIN_THROTTLED,
    ),
)
async def change_password(
    body: PasswordChangeRequest,
    caller: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> AuthResponse:
    issued = await auth.change_password(
        session,
        settings=settings,
        auth=caller.auth,
        current_password=body.current_password,
        new_password=body.new_password,
        origin=caller.origin,
    )
    return _hand_out(response, settings, issued, user=caller.user, cookie=caller.via_cookie)


@router.get(
    "/sessions",
    summary="The user's active sessions, newest first",
    responses=error_responses(401),
)
async def list_sessions(
    caller: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    limit: Limit = 20,
    starting_after: StartingAfter = None,
) -> ListResponse[SessionSummary]:
    page = await auth.list_sessions(
        session, settings=settings, user=caller.user, limit=limit, starting_after=starting_after
    )
    return ListResponse.of(
        page, lambda record: session_summary(record, current_id=caller.auth.session.id)
    )


@router.delete(
    "/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End one of the user's sessions",
    responses=error_responses(401, 403, 404),
)
async def revoke_session(
    session_id: Annotated[str, Path(max_length=64, description="The session's id (`ses_…`).")],
    caller: CurrentUser,
    session: SessionDep,
) -> None:
    await auth.revoke_session(
        session, user=caller.user, session_id=session_id, origin=caller.origin
    )


@router.get(
    "/security-events",
    summary="The user's sign-in and session events, newest first",
    responses=error_responses(401),
)
async def list_security_events(
    caller: CurrentUser,
    session: SessionDep,
    limit: Limit = 20,
    starting_after: StartingAfter = None,
) -> ListResponse[UserSecurityEventOut]:
    page = await security_events.list_for_user(
        session, user_id=caller.user.id, limit=limit, starting_after=starting_after
    )
    return ListResponse.of(page, UserSecurityEventOut.model_validate)
