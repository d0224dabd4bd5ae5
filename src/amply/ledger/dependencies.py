"""The checkpoint signer and the cache of chain verdicts, as request dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from amply.ledger.signing import NoteSigner
from amply.ledger.verdicts import VerdictCache


def get_signer(request: Request) -> NoteSigner:
    signer: NoteSigner = request.app.state.signer
    return signer


SignerDep = Annotated[NoteSigner, Depends(get_signer)]


def get_verdicts(request: Request) -> VerdictCache:
    verdicts: VerdictCache = request.app.state.verdicts
    return verdicts


VerdictsDep = Annotated[VerdictCache, Depends(get_verdicts)]
