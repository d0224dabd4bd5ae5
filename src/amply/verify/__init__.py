"""The offline verifier of Amply's ledger: the code auditors read, and run.

It checks every hash, link, sequence number and running balance of a chain, the signed
checkpoint that covers it, that a later download extends an earlier one, and a donor's
receipt; the first rule an entry breaks is reported with that entry's sequence number. The
server's ``verify`` endpoint, its checkpoint signer, ``amply verify`` (``amply.cli``) and an
auditor's own copy all run this same code.

Standard library only, plus the ``cryptography`` package for Ed25519 signatures (in
:mod:`amply.verify.checkpoint` alone); nothing else of Amply is imported. The modules follow
``docs/ledger-format.md``, and read best in this order:

1. :mod:`amply.verify.crypto`: §2, the exact bytes of an entry and its hash.
2. :mod:`amply.verify.chain`: §3, the rules a chain obeys (:class:`ChainVerifier`).
3. :mod:`amply.verify.parse`: §4.1, the JSON a verifier accepts, and reading a file as a stream.
4. :mod:`amply.verify.export`: §4 and §4.3, an export and the checkpoint it carries.
5. :mod:`amply.verify.consistency`: §4.4, two downloads of one chain (OLD and NEW).
6. :mod:`amply.verify.checkpoint`: §6, signed checkpoints and verifier keys.
7. :mod:`amply.verify.receipts`: §7, donor receipts.

The names below are what the rest of Amply uses; each module holds the rest of its section.
"""

from __future__ import annotations

from amply.verify.chain import ChainVerifier, VerificationResult, verify_entries
from amply.verify.checkpoint import (
    ED25519,
    Checkpoint,
    CheckpointError,
    VerifierKey,
    checkpoint_body,
    key_id,
    looks_like_key,
    parse_checkpoint,
    valid_key_name,
)
from amply.verify.consistency import verify_extension, verify_extension_files
from amply.verify.export import EXPORT_FORMAT, verify_export, verify_export_file
from amply.verify.parse import ExportFormatError, loads_strict, read_export
from amply.verify.receipts import (
    RECEIPT_FORMAT,
    ReceiptResult,
    receipt_commitment,
    verify_receipt,
    verify_receipt_file,
)

__all__ = [
    "ED25519",
    "EXPORT_FORMAT",
    "RECEIPT_FORMAT",
    "ChainVerifier",
    "Checkpoint",
    "CheckpointError",
    "ExportFormatError",
    "ReceiptResult",
    "VerificationResult",
    "VerifierKey",
    "checkpoint_body",
    "key_id",
    "loads_strict",
    "looks_like_key",
    "parse_checkpoint",
    "read_export",
    "receipt_commitment",
    "valid_key_name",
    "verify_entries",
    "verify_export",
    "verify_export_file",
    "verify_extension",
    "verify_extension_files",
    "verify_receipt",
    "verify_receipt_file",
]
