"""What the organisation access dependencies (``organisations.dependencies``) may answer,
for the ``responses=`` of the routes that use them: each route adds its own codes. Within a
status OpenAPI lists the codes in the order given, so ``role_insufficient`` stays first."""

from __future__ import annotations

from typing import Final

from amply.kit.errors import ErrorCode

# OrgMember("viewer"): a signed-in member of the organisation (an API key is refused).
ORG_MEMBER_ERRORS: Final = (401, 403, 404, ErrorCode.SESSION_REQUIRED)
# OrgMember("admin") or ("owner"): a signed-in member of that role or above.
ORG_ADMIN_ERRORS: Final = (401, 403, 404, ErrorCode.ROLE_INSUFFICIENT, ErrorCode.SESSION_REQUIRED)
# OrgMemberOrApiKey("admin", "write"): an admin, or the organisation's write API key.
ORG_WRITER_ERRORS: Final = (401, 403, 404, ErrorCode.ROLE_INSUFFICIENT, ErrorCode.API_KEY_READ_ONLY)
