"""Generate Amply's ledger conformance vectors (see README.md): deterministic, so that running
it again rewrites exactly the committed files.

    python conformance/generate.py

Every key comes from a fixed Ed25519 seed and every time is fixed; Ed25519 signatures are
deterministic. Each case is a directory under ``cases/`` holding the files it names, and one
entry of ``manifest.json``: the command, its arguments (relative to this directory), the exit
code a verifier must give and the seq it must name (``null`` for none).
"""

from __future__ import annotations

import base64
import codecs
import copy
import json
import shutil
import sys
from collections.abc import Callable
from hashlib import sha256
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))

from amply.ledger.signing import NoteSigner  # noqa: E402
from amply.verify import checkpoint_body, receipt_commitment  # noqa: E402
from amply.verify.crypto import entry_hash  # noqa: E402

NAME = "amply.example"
# The documentation's example key (docs/ledger-format.md §6.4): seed "amply.example".
SIGNER = NoteSigner(NAME, Ed25519PrivateKey.from_private_bytes(sha256(b"amply.example").digest()))
FORGER = NoteSigner(NAME, Ed25519PrivateKey.from_private_bytes(sha256(b"forger").digest()))
OTHER = NoteSigner("other.example", Ed25519PrivateKey.from_private_bytes(sha256(b"other").digest()))
OLD_KEY = NoteSigner(NAME, Ed25519PrivateKey.from_private_bytes(sha256(b"retired").digest()))
KEY = SIGNER.verifier_key.encode()
FORGER_KEY = FORGER.verifier_key.encode()
OLD_VKEY = OLD_KEY.verifier_key.encode()

TIME = "2026-11-23T00:00:00.000000Z"
ORG = "org_7Yq2Lm9Tx4Vb8Nc1Rd5Fg3Hk"
WALLET = "wal_Conformance0Wallet00001"
PLATFORM = "plat_fees"
DONATION = "don_Q8w7E6r5T4y3U2i1O0p9A8s7"
SALT = "5a" * 32
SECRET = "c3" * 32
COMMITMENT = receipt_commitment(donation_id=DONATION, salt=SALT, secret=SECRET)

CASES: list[dict[str, Any]] = []


# -- Building blocks -------------------------------------------------------------------------


def entry(
    chain_id: str, seq: int, amount: int, balance: int, prev: str | None, **fields: Any
) -> dict[str, Any]:
    metadata = fields.pop("metadata", None) or json.dumps(
        {"donation_id": f"don_{seq:024d}", "donor": "Anonymous", "fund_id": None},
        separators=(",", ":"),
        sort_keys=True,
    )
    item = {
        "chain_id": chain_id,
        "seq": seq,
        "id": f"led_{seq:024d}",
        "type": fields.pop("type", "donation_received" if amount > 0 else "donation_refunded"),
        "amount": amount,
        "currency": fields.pop("currency", "EUR"),
        "balance_after": balance,
        "metadata": metadata,
        "journal_id": f"jrn_{seq:024d}",
        "created_at": f"2026-11-21T09:30:{seq:02d}.000000Z",
        "prev_entry_hash": prev,
    }
    item.update(fields)
    item["entry_hash"] = entry_hash(item)
    return item


def chain(
    amounts: list[int] | list[tuple[int, str]],
    *,
    chain_id: str = ORG,
    metadata: dict[int, str] | None = None,
    types: dict[int, str] | None = None,
) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    balances: dict[str, int] = {}
    prev = None
    for seq, item in enumerate(amounts, start=1):
        amount, currency = item if isinstance(item, tuple) else (item, "EUR")
        balances[currency] = balances.get(currency, 0) + amount
        extra: dict[str, Any] = {"currency": currency}
        if metadata and seq in metadata:
            extra["metadata"] = metadata[seq]
        if types and seq in types:
            extra["type"] = types[seq]
        made = entry(chain_id, seq, amount, balances[currency], prev, **extra)
        entries.append(made)
        prev = made["entry_hash"]
    return entries


def relink(entries: list[dict[str, Any]], start: int = 0) -> list[dict[str, Any]]:
    """Recompute every link and hash from position ``start`` on (a forger's splice)."""
    for position in range(start, len(entries)):
        item = entries[position]
        item["prev_entry_hash"] = entries[position - 1]["entry_hash"] if position else None
        item["entry_hash"] = entry_hash(item)
    return entries


def body_for(chain_id: str, size: int, root: str, *, time: str = TIME, name: str = NAME) -> str:
    return checkpoint_body(origin=f"{name}/ledger/{chain_id}", size=size, root_hash=root, time=time)


def note(body: str, *signers: NoteSigner) -> str:
    lines = [SIGNER_LINE(signer, body) for signer in signers]
    return body + "\n" + "".join(line + "\n" for line in lines)


def SIGNER_LINE(signer: NoteSigner, body: str) -> str:  # noqa: N802
    return signer.sign(body).split("\n\n", 1)[1].rstrip("\n")


def export(
    entries: list[dict[str, Any]],
    *,
    chain_id: str | None = None,
    kind: str = "organisation",
    signer: NoteSigner | None = SIGNER,
) -> dict[str, Any]:
    chain_id = chain_id or (entries[0]["chain_id"] if entries else ORG)
    last = entries[-1] if entries else None
    document: dict[str, Any] = {
        "format": "amply-ledger-export/v1",
        "chain": {"id": chain_id, "kind": kind},
        "head": {
            "seq": last["seq"] if last else 0,
            "entry_hash": last["entry_hash"] if last else None,
        },
    }
    if last is not None and signer is not None:
        body = body_for(chain_id, last["seq"], last["entry_hash"])
        document["checkpoint"] = {"note": signer.sign(body), "key": signer.verifier_key.encode()}
    document["entries"] = entries
    return document


def dumps(document: Any, **options: Any) -> bytes:
    """Compact JSON with literal non-ASCII text, as Amply writes exports."""
    options.setdefault("separators", (",", ":"))
    return json.dumps(document, ensure_ascii=False, **options).encode("utf-8")


# -- Recording cases ---------------------------------------------------------------------------


def case(
    name: str,
    description: str,
    *,
    files: dict[str, bytes | Any],
    args: list[str],
    exit: int,  # noqa: A002
    seq: int | None = None,
    command: str = "verify",
    covers: str = "",
) -> None:
    directory = ROOT / "cases" / name
    directory.mkdir(parents=True)
    for file, content in files.items():
        data = content if isinstance(content, bytes) else dumps(content)
        (directory / file).write_bytes(data)
    resolved = [f"cases/{name}/{a}" if a in files else a for a in args]
    CASES.append(
        {
            "id": name,
            "description": description,
            "covers": covers,
            "command": command,
            "args": resolved,
            "exit": exit,
            "seq": seq,
        }
    )


def verify(
    name: str,
    description: str,
    document: Any,
    *,
    exit: int,  # noqa: A002
    seq: int | None = None,
    key: str | None = KEY,
    covers: str = "",
) -> None:
    args = ["export.json"] + (["--key", key] if key else [])
    case(
        name,
        description,
        files={"export.json": document},
        args=args,
        exit=exit,
        seq=seq,
        covers=covers,
    )


def tampered(
    change: Callable[[list[dict[str, Any]]], Any],
    *,
    amounts: list[int] | None = None,
    kind: str = "organisation",
    chain_id: str = ORG,
) -> dict[str, Any]:
    """An honest signed export whose entries ``change`` then alters (the checkpoint stays)."""
    entries = chain(amounts or [2500, -103, 5000], chain_id=chain_id)
    document = export(entries, kind=kind)
    change(document["entries"])
    return document


def resigned(entries: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    """An export signed over whatever ``entries`` now end in (the chain's own fault shows)."""
    return export(entries, **options)


# -- The cases -------------------------------------------------------------------------------


def honest_cases() -> None:
    base = chain([2500, -103, 5000])
    verify("honest-organisation", "An honest organisation chain, key pinned.", export(base), exit=0)
    verify(
        "honest-unpinned",
        "The same without --key: checked against the key it names (verdict: not pinned).",
        export(base),
        exit=0,
        key=None,
    )
    wallet = chain([1000, -400, 250], chain_id=WALLET)
    verify("honest-wallet", "An honest wallet chain.", export(wallet, kind="wallet"), exit=0)
    platform = chain([30, 30, -10], chain_id=PLATFORM)
    verify(
        "honest-platform", "An honest platform chain.", export(platform, kind="platform"), exit=0
    )
    verify("honest-empty", "An empty chain: head seq 0, no checkpoint.", export([]), exit=0)
    verify("honest-empty-unpinned", "An empty chain without --key.", export([]), exit=0, key=None)
    verify(
        "honest-currencies",
        "Running balances are per currency.",
        export(chain([(2500, "EUR"), (900, "USD"), (-100, "EUR"), (-900, "USD")])),
        exit=0,
        covers="§3 rule 5",
    )
    unicode = chain(
        [2500, 5000],
        metadata={
            1: '{"display_name":"Zoë Ångström-Müller","message":"Merci ! 日本からの寄付 🎉"}',
            2: '{"escaped":"\\u00e9\\n\\"quoted\\"","slash":"a\\/b"}',
        },
    )
    verify(
        "honest-unicode",
        "Metadata with non-ASCII text and JSON escapes: lengths count UTF-8 bytes.",
        export(unicode),
        exit=0,
        covers="§2.1, §2.3",
    )
    verify(
        "honest-pretty",
        "Pretty-printed, with white space everywhere JSON allows it.",
        dumps(export(base), indent=2, separators=(",", ": ")),
        exit=0,
        covers="§4.1",
    )
    signed = export(base)
    reordered = {
        "format": signed["format"],
        "chain": signed["chain"],
        "entries": signed["entries"],
        "head": signed["head"],
        "checkpoint": signed["checkpoint"],
    }
    verify(
        "honest-head-after-entries",
        "head and checkpoint after entries (format and chain before): allowed.",
        reordered,
        exit=0,
        covers="§4.1 order of members",
    )
    extra = export(copy.deepcopy(base))
    extra["generator"] = {"name": "x", "list": [1, 2, {"a": None}]}
    for item in extra["entries"]:
        item["note"] = "members not in §1 are ignored"
    verify(
        "honest-unknown-members",
        "Unknown members at the top level and in entries are ignored.",
        extra,
        exit=0,
        covers="§3 rule 1, §4",
    )
    shuffled = export(copy.deepcopy(base))
    shuffled["entries"] = [dict(reversed(list(item.items()))) for item in shuffled["entries"]]
    verify(
        "honest-member-order",
        "Entry members in another order: JSON objects are unordered.",
        shuffled,
        exit=0,
        covers="§4.1",
    )
    verify(
        "honest-negative-organisation",
        "An organisation chain may go below zero (a refund after a payout).",
        export(chain([100, -300])),
        exit=0,
        covers="§3 rule 6",
    )
    verify(
        "honest-amount-bound",
        "Amounts of exactly ±10^15 are within the bound.",
        export(chain([10**15, -(10**15)])),
        exit=0,
        covers="§1, §3 rule 1",
    )
    both = export(copy.deepcopy(base))
    body = body_for(ORG, 3, base[-1]["entry_hash"])
    both["checkpoint"]["note"] = note(body, OTHER, SIGNER)
    verify(
        "honest-other-signature",
        "A signature by another key beside the trusted one is ignored.",
        both,
        exit=0,
        covers="§4.3 rule 4",
    )
    twice = export(copy.deepcopy(base))
    twice["checkpoint"]["note"] = note(body, OLD_KEY, SIGNER)
    case(
        "honest-two-trusted-keys",
        "Signed by two trusted keys, both valid.",
        files={"export.json": twice},
        args=["export.json", "--key", KEY, "--key", OLD_VKEY],
        exit=0,
        covers="§4.3 rule 4",
    )


def rule_cases() -> None:
    def at(position: int, **changes: Any) -> Callable[[list[dict[str, Any]]], None]:
        def change(entries: list[dict[str, Any]]) -> None:
            entries[position].update(changes)

        return change

    types: list[tuple[str, str, Callable[[list[dict[str, Any]]], Any]]] = [
        ("seq-string", 'seq is the string "2"', at(1, seq="2")),
        ("seq-bool", "seq is true (a boolean is not an integer)", at(0, seq=True)),
        ("amount-string", 'amount is the string "-103"', at(1, amount="-103")),
        ("balance-null", "balance_after is null", at(1, balance_after=None)),
        ("metadata-object", "metadata is an object, not a string", at(1, metadata={"a": 1})),
        ("id-number", "id is a number", at(1, id=7)),
        ("prev-number", "prev_entry_hash is a number", at(1, prev_entry_hash=0)),
        ("hash-null", "entry_hash is null", at(1, entry_hash=None)),
        ("missing-journal", "journal_id is missing", lambda e: e[1].pop("journal_id")),
        ("missing-created", "created_at is missing", lambda e: e[1].pop("created_at")),
    ]
    for name, description, change in types:
        position = 0 if name == "seq-bool" else 1
        verify(
            f"rule1-{name}",
            f"Rule 1: {description}.",
            tampered(change),
            exit=1,
            seq=position + 1,
            covers="§3 rule 1",
        )
    raw = export(chain([2500, -103, 5000]))
    text = dumps(raw).decode()
    fee = '"amount":-103'
    verify(
        "rule1-amount-fraction",
        "Rule 1: amount written -103.0 (a fraction is not an integer).",
        text.replace(fee, '"amount":-103.0').encode(),
        exit=1,
        seq=2,
        covers="§1, §3 rule 1",
    )
    verify(
        "rule1-amount-exponent",
        "Rule 1: amount written -1.03e2.",
        text.replace(fee, '"amount":-1.03e2').encode(),
        exit=1,
        seq=2,
        covers="§1, §3 rule 1",
    )
    verify(
        "rule1-amount-huge-exponent",
        "Rule 1: amount written 1e400 (no integer).",
        text.replace(fee, '"amount":1e400').encode(),
        exit=1,
        seq=2,
        covers="§3 rule 1",
    )
    verify(
        "rule1-seq-long-integer",
        "Rule 1: seq written with 40 digits (beyond 64 bits).",
        text.replace('"seq":2,', '"seq":' + "9" * 40 + ",").encode(),
        exit=1,
        seq=2,
        covers="§1, §3 rule 1",
    )
    beyond = chain([2500, 10**15 + 1])
    verify(
        "rule1-amount-beyond-bound",
        "Rule 1: amount 10^15 + 1, every hash and balance right.",
        export(beyond),
        exit=1,
        seq=2,
        covers="§1, §3 rule 1",
    )
    big = chain([1000, 10**15])
    big[1]["balance_after"] = 2**63
    relink(big, 1)
    verify(
        "rule1-balance-beyond-int64",
        "Rule 1: balance_after 2^63, beyond a signed 64-bit integer (hash recomputed).",
        export(big),
        exit=1,
        seq=2,
        covers="§1, §3 rule 1",
    )
    lone = text.replace(
        '"journal_id":"jrn_000000000000000000000002"',
        '"journal_id":"jrn_\\ud800"',
    )
    verify(
        "rule1-lone-surrogate",
        "Rule 1: a field holding a lone surrogate escape (not Unicode text).",
        lone.encode(),
        exit=1,
        seq=2,
        covers="§1, §3 rule 1, §4.1",
    )
    for value, description in (("[1,2]", "an array"), ("null", "null"), ('"entry"', "a string")):
        not_object = text.replace(
            "{" + dumps(raw["entries"][1]).decode()[1:],
            value,
        )
        verify(
            f"rule1-entry-{description.split()[-1]}",
            f"Rule 1: the second entry is {description}.",
            not_object.encode(),
            exit=1,
            seq=2,
            covers="§3 rule 1",
        )
    verify(
        "rule2-other-chain",
        "Rule 2: an entry of another chain (its hash recomputed).",
        tampered(lambda e: (e[1].update(chain_id="org_Other"), relink(e, 1))),
        exit=1,
        seq=2,
        covers="§3 rule 2",
    )
    verify(
        "rule3-gap",
        "Rule 3: seq 3 at position 2 (a gap).",
        tampered(lambda e: (e.pop(1), relink(e, 1))),
        exit=1,
        seq=2,
        covers="§3 rule 3",
    )

    def swap(entries: list[dict[str, Any]]) -> None:
        entries[1], entries[2] = entries[2], entries[1]

    verify("rule3-reorder", "Rule 3: entries 2 and 3 swapped.", tampered(swap), exit=1, seq=2)

    def duplicate(entries: list[dict[str, Any]]) -> None:
        entries.insert(2, copy.deepcopy(entries[1]))

    verify("rule3-duplicate", "Rule 3: entry 2 twice.", tampered(duplicate), exit=1, seq=3)
    verify(
        "rule4-first-has-prev",
        "Rule 4: seq 1 with a prev_entry_hash (hash recomputed).",
        tampered(
            lambda e: (
                e[0].update(prev_entry_hash="sha256:" + "0" * 64),
                e[0].update(entry_hash=entry_hash(e[0])),
            )
        ),
        exit=1,
        seq=1,
        covers="§3 rule 4",
    )
    verify(
        "rule4-broken-link",
        "Rule 4: entry 2 links to another hash (its own hash recomputed).",
        tampered(
            lambda e: (
                e[1].update(prev_entry_hash="sha256:" + "1" * 64),
                e[1].update(entry_hash=entry_hash(e[1])),
            )
        ),
        exit=1,
        seq=2,
        covers="§3 rule 4",
    )
    verify(
        "rule4-null-prev",
        "Rule 4: entry 2 with a null prev_entry_hash (the empty string's netstring).",
        tampered(
            lambda e: (
                e[1].update(prev_entry_hash=None),
                e[1].update(entry_hash=entry_hash(e[1])),
            )
        ),
        exit=1,
        seq=2,
        covers="§2.1, §3 rule 4",
    )
    verify(
        "rule5-balance",
        "Rule 5: a wrong balance_after (hashes recomputed).",
        tampered(lambda e: (e[1].update(balance_after=2398), relink(e, 1))),
        exit=1,
        seq=2,
        covers="§3 rule 5",
    )
    mixed = chain([(2500, "EUR"), (900, "USD")])
    mixed[1]["balance_after"] = 3400  # the EUR balance plus the USD amount
    relink(mixed, 1)
    verify(
        "rule5-currencies-mixed",
        "Rule 5: a USD entry continuing the EUR balance.",
        resigned(mixed),
        exit=1,
        seq=2,
        covers="§3 rule 5",
    )
    negative = chain([100, -300], chain_id=WALLET)
    verify(
        "rule6-wallet-negative",
        "Rule 6: a wallet going below zero, every hash right.",
        resigned(negative, kind="wallet"),
        exit=1,
        seq=2,
        covers="§3 rule 6",
    )
    edits = {
        "metadata": lambda e: e[1].update(metadata=e[1]["metadata"].replace("Anon", "anon")),
        "amount-and-balance": lambda e: e[1].update(amount=-104, balance_after=2396),
        "created-at": lambda e: e[1].update(created_at="2026-11-21T09:30:02.000001Z"),
        "type": lambda e: e[1].update(type="dispute_fee"),
        "id": lambda e: e[1].update(id="led_X"),
        "uppercase-hash": lambda e: e[1].update(entry_hash=e[1]["entry_hash"].upper()),
    }
    for name, change in edits.items():
        verify(
            f"rule7-{name}",
            f"Rule 7: entry 2's {name.replace('-', ' ')} changed, its hash not recomputed.",
            tampered(change),
            exit=1,
            seq=2,
            covers="§3 rule 7",
        )
    verify(
        "rule7-last-entry",
        "Rule 7: the last entry changed.",
        tampered(lambda e: e[2].update(metadata="{}")),
        exit=1,
        seq=3,
    )


def head_and_checkpoint_cases() -> None:
    base = chain([2500, -103, 5000])
    document = export(copy.deepcopy(base))
    document["head"]["seq"] = 4
    verify("head-seq-beyond", "Head declares 4 entries, 3 present.", document, exit=1, seq=4)
    document = export(copy.deepcopy(base))
    document["head"]["seq"] = 2
    verify("head-seq-short", "Head declares 2 entries, 3 present: m + 1.", document, exit=1, seq=4)
    document = export(copy.deepcopy(base))
    document["head"]["entry_hash"] = base[1]["entry_hash"]
    verify("head-hash-wrong", "Head hash is not the last entry's.", document, exit=1, seq=4)
    truncated = export(copy.deepcopy(base))
    truncated["entries"].pop()
    truncated["head"] = {"seq": 2, "entry_hash": base[1]["entry_hash"]}
    verify(
        "truncated-head-matches",
        "Last entry dropped and the head changed to match: the checkpoint (over 3) fails.",
        truncated,
        exit=1,
        covers="§4.3 rule 3",
    )
    splice = export(copy.deepcopy(base))
    splice["entries"][1]["metadata"] = '{"donor":"Mallory"}'
    relink(splice["entries"], 1)
    splice["head"]["entry_hash"] = splice["entries"][-1]["entry_hash"]
    verify(
        "splice-recomputed",
        "Entry 2 rewritten and every later hash recomputed: only the checkpoint tells.",
        splice,
        exit=1,
        covers="§4.3 rule 3",
    )
    verify(
        "splice-resigned-unpinned",
        "The splice re-signed by a forger's own key, no --key: verifies (pin the key!).",
        export(relink(copy.deepcopy(splice["entries"]), 1), signer=FORGER),
        exit=0,
        key=None,
        covers="§4.2 pinning",
    )
    verify(
        "splice-resigned-pinned",
        "The same with Amply's key pinned: not signed by a trusted key.",
        export(copy.deepcopy(splice["entries"]), signer=FORGER),
        exit=1,
        covers="§4.3 rule 4",
    )
    unsigned = export(copy.deepcopy(base), signer=None)
    verify(
        "checkpoint-missing-pinned",
        "A non-empty export without a checkpoint, key pinned.",
        unsigned,
        exit=1,
        covers="§4.3",
    )
    verify(
        "checkpoint-missing-unpinned",
        "A non-empty export without a checkpoint and no --key: no clean OK.",
        unsigned,
        exit=1,
        key=None,
        covers="§4.3",
    )
    empty = export([])
    empty["checkpoint"] = export(copy.deepcopy(base))["checkpoint"]
    verify(
        "checkpoint-on-empty",
        "An empty export that carries a checkpoint.",
        empty,
        exit=1,
        covers="§4.3",
    )

    def with_note(text: str, name: str, description: str, **options: Any) -> None:
        document = export(copy.deepcopy(base))
        document["checkpoint"]["note"] = text
        verify(name, description, document, covers="§4.3, §6", **{"exit": 1, **options})

    root = base[-1]["entry_hash"]
    good = body_for(ORG, 3, root)
    with_note(
        note(body_for("org_Another", 3, root), SIGNER),
        "checkpoint-other-chain",
        "The checkpoint names another chain.",
    )
    with_note(note(body_for(ORG, 2, root), SIGNER), "checkpoint-size", "Checkpoint size 2, head 3.")
    with_note(
        note(body_for(ORG, 3, base[0]["entry_hash"]), SIGNER),
        "checkpoint-root",
        "Checkpoint root hash is not the head's.",
    )
    flipped = note(good, SIGNER)
    signature = flipped.rsplit(" ", 1)[1].rstrip("\n")
    raw = bytearray(base64.b64decode(signature))
    raw[10] ^= 1
    with_note(
        flipped.replace(signature, base64.b64encode(bytes(raw)).decode()),
        "checkpoint-bad-signature",
        "The trusted key's signature has one bit flipped.",
    )
    bad_line = (
        "\u2014 "
        + NAME
        + " "
        + base64.b64encode(base64.b64decode(signature)[:4] + bytes(64)).decode()
    )
    with_note(
        good + "\n" + SIGNER_LINE(SIGNER, good) + "\n" + bad_line + "\n",
        "checkpoint-second-signature-invalid",
        "Two signature lines by the trusted key: the first valid, the second not.",
    )
    with_note(
        good + "\n" + bad_line + "\n" + SIGNER_LINE(SIGNER, good) + "\n",
        "checkpoint-first-signature-invalid",
        "Two signature lines by the trusted key: the first invalid, the second valid.",
    )
    three = f"{NAME}/ledger/{ORG}\n3\n{good.split(chr(10))[2]}\n"
    with_note(note(three, SIGNER), "checkpoint-three-lines", "A checkpoint of three lines.")
    with_note(note(good + "extra line\n", SIGNER), "checkpoint-five-lines", "Five lines.")
    with_note(
        note(three + "not a time\n", SIGNER),
        "checkpoint-no-time-line",
        "Four lines, the last not a time line.",
    )
    with_note(
        note(good.replace(TIME, "2026-11-23T00:00:00Z"), SIGNER),
        "checkpoint-time-form",
        "A time line not in the form of §2.3.",
    )
    with_note(
        note(good.replace("\n3\n", "\n03\n"), SIGNER),
        "checkpoint-size-leading-zero",
        "Size 03.",
    )
    with_note(
        note(good.replace(good.split("\n")[2], "not*base64"), SIGNER),
        "checkpoint-root-not-base64",
        "A root hash that is not base64.",
    )
    with_note(
        note(good.replace(good.split("\n")[2], base64.b64encode(bytes(31)).decode()), SIGNER),
        "checkpoint-root-31-bytes",
        "A root hash of 31 bytes.",
    )
    with_note(good + SIGNER_LINE(SIGNER, good) + "\n", "checkpoint-no-blank-line", "No blank line.")
    with_note(
        note(good, SIGNER).replace("\u2014", "-"),
        "checkpoint-hyphen",
        "A hyphen instead of the em dash.",
    )
    with_note(
        note(good, SIGNER).replace("ledger", "led\rger"),
        "checkpoint-control-character",
        "A carriage return in the note.",
    )
    document = export(copy.deepcopy(base))
    text = dumps(document).decode()
    text = text.replace(f"{NAME}/ledger/{ORG}", f"{NAME}/ledger/{ORG}\\udc00", 1)
    verify(
        "checkpoint-lone-surrogate",
        "A lone surrogate in the checkpoint note.",
        text.encode(),
        exit=1,
        covers="§4.1, §4.3",
    )
    malformed = export(copy.deepcopy(base))
    malformed["checkpoint"]["key"] = "amply.example+00000000+AAAA"
    verify(
        "checkpoint-embedded-key-malformed",
        "Unpinned, the export's own key is malformed.",
        malformed,
        exit=1,
        key=None,
        covers="§4.3",
    )
    nulled = export(copy.deepcopy(base))
    nulled["checkpoint"] = None
    verify("checkpoint-null", '"checkpoint": null is not "absent".', nulled, exit=2, covers="§4.1")
    noted = export(copy.deepcopy(base))
    del noted["checkpoint"]["note"]
    verify("checkpoint-no-note", "A checkpoint without a note.", noted, exit=2, covers="§4.1")


def key_cases() -> None:
    base = chain([2500, -103, 5000])
    honest = export(base)
    root = base[-1]["entry_hash"]
    by_old = export(copy.deepcopy(base))
    by_old["checkpoint"] = {"note": note(body_for(ORG, 3, root), OLD_KEY), "key": OLD_VKEY}

    def keys_case(
        name: str,
        description: str,
        keys: bytes | Any,
        *,
        exit: int,  # noqa: A002
        document: dict[str, Any] = honest,
        seq: int | None = None,
    ) -> None:
        case(
            name,
            description,
            files={"export.json": document, "keys.json": keys},
            args=["export.json", "--key", "keys.json"],
            exit=exit,
            seq=seq,
            covers="§6.3",
        )

    def item(key: str, status: str | None = "active", **times: Any) -> dict[str, Any]:
        made: dict[str, Any] = {"key": key, **times}
        if status is not None:
            made["status"] = status
        return made

    keys_case(
        "keys-active",
        "The keys document lists the key as active.",
        {"data": [item(KEY, activated_at=TIME)]},
        exit=0,
    )
    keys_case(
        "keys-no-status",
        "An item without status (lists before key statuses): active.",
        {"data": [item(KEY, None)]},
        exit=0,
    )
    keys_case(
        "keys-retired-before",
        "Signed by a retired key, checkpoint time before retired_at.",
        {"data": [item(KEY), item(OLD_VKEY, "retired", retired_at="2026-12-01T00:00:00Z")]},
        exit=0,
        document=by_old,
    )
    keys_case(
        "keys-retired-after",
        "Signed by a retired key, checkpoint time after retired_at.",
        {"data": [item(KEY), item(OLD_VKEY, "retired", retired_at="2026-11-01T00:00:00Z")]},
        exit=1,
        document=by_old,
    )
    keys_case(
        "keys-retired-no-time",
        "A retired key listed without retired_at: trusted for all.",
        {"data": [item(KEY), item(OLD_VKEY, "retired", retired_at=None)]},
        exit=0,
        document=by_old,
    )
    keys_case(
        "keys-revoked-signer",
        "Signed by a revoked key, another key active: not signed by a trusted key.",
        {"data": [item(KEY), item(OLD_VKEY, "revoked", revoked_at=TIME)]},
        exit=1,
        document=by_old,
    )
    keys_case(
        "keys-only-revoked",
        "A keys document whose only key is revoked: no key vouches for anything.",
        {"data": [item(OLD_VKEY, "revoked")]},
        exit=2,
        document=by_old,
    )
    for name, description, keys in (
        ("keys-invalid-json", "A keys file that is not JSON.", b'{"data": [,]}'),
        ("keys-data-null", '"data": null.', {"data": None}),
        ("keys-item-without-key", "An item without key.", {"data": [{"status": "active"}]}),
        ("keys-item-not-object", "An item that is a string.", {"data": [KEY]}),
        ("keys-unknown-status", "Status 'paused'.", {"data": [item(KEY, "paused")]}),
        ("keys-status-null", "Status null.", {"data": [{"key": KEY, "status": None}]}),
        (
            "keys-retired-at-garbage",
            "retired_at that is not a time.",
            {"data": [item(KEY), item(OLD_VKEY, "retired", retired_at="yesterday")]},
        ),
        (
            "keys-malformed-revoked",
            "A malformed key, even revoked, makes the document unreadable.",
            {"data": [item(KEY), item("amply.example+zz+AA==", "revoked")]},
        ),
        (
            "keys-duplicate-member",
            "A keys document with a duplicate member name.",
            f'{{"data": [{{"key": "{KEY}", "key": "{FORGER_KEY}"}}]}}'.encode(),
        ),
        (
            "keys-bom",
            "A keys document with a byte order mark.",
            codecs.BOM_UTF8 + dumps({"data": [item(KEY)]}),
        ),
        (
            "keys-lines-bad-line",
            "A key per line, one line not a key.",
            (KEY + "\nnot a key\n").encode(),
        ),
    ):
        keys_case(name, f"Unreadable keys: {description}", keys, exit=2)
    case(
        "keys-lines",
        "A file of keys, one per line.",
        files={"export.json": honest, "keys.txt": (OLD_VKEY + "\n" + KEY + "\n").encode()},
        args=["export.json", "--key", "keys.txt"],
        exit=0,
        covers="§4.2",
    )
    case(
        "key-file-name-with-plus",
        "A key file whose name holds '+' is a file: only a value shaped like a key is a key.",
        files={"export.json": honest, "a+b.txt": (KEY + "\n").encode()},
        args=["export.json", "--key", "a+b.txt"],
        exit=0,
        covers="§4.2",
    )
    case(
        "key-malformed",
        "--key shaped like a key whose id does not match.",
        files={"export.json": honest},
        args=["export.json", "--key", KEY.replace(KEY.split("+")[1], "00000000")],
        exit=2,
        covers="§4.2",
    )
    case(
        "key-missing-file",
        "--key naming no key and no file.",
        files={"export.json": honest},
        args=["export.json", "--key", "no-such-keys.json"],
        exit=2,
        covers="§4.2",
    )


def unreadable_cases() -> None:
    base = chain([2500, -103, 5000])
    honest = export(base)
    data = dumps(honest)
    text = data.decode()
    for name, description, content in (
        ("bom", "UTF-8 with a byte order mark.", codecs.BOM_UTF8 + data),
        ("utf16-bom", "UTF-16 (little-endian, with BOM).", text.encode("utf-16")),
        ("utf16be", "UTF-16 big-endian, no BOM.", text.encode("utf-16-be")),
        ("utf32", "UTF-32 with BOM.", text.encode("utf-32")),
        (
            "latin1",
            "Latin-1 bytes inside a string (invalid UTF-8).",
            data.replace(b"Anon", b"An\xe9n"),
        ),
        ("nan", "amount NaN.", text.replace('"amount":-103', '"amount":NaN').encode()),
        (
            "infinity",
            "amount -Infinity.",
            text.replace('"amount":-103', '"amount":-Infinity').encode(),
        ),
        (
            "huge-integer",
            "An integer of 5,000 digits.",
            text.replace('"amount":-103', '"amount":' + "9" * 5000).encode(),
        ),
        (
            "duplicate-entry-member",
            "An entry with amount twice.",
            text.replace('"amount":-103', '"amount":-103,"amount":-1').encode(),
        ),
        (
            "duplicate-top-member",
            "head twice.",
            text.replace('"head":', '"head":{"seq":0,"entry_hash":null},"head":', 1).encode(),
        ),
        (
            "duplicate-nested",
            "A duplicate name inside an unknown member.",
            text.replace('"entries":', '"x":{"a":1,"a":2},"entries":').encode(),
        ),
        ("truncated", "The file cut in the middle.", data[: len(data) // 2]),
        (
            "truncated-after-broken",
            "Entry 2 broken, then the file cut: unreadable wins.",
            dumps(tampered(lambda e: e[1].update(metadata="{}")))[:-40],
        ),
        ("trailing-garbage", "Text after the JSON object.", data + b" {}"),
        ("trailing-comma", "A comma after the last entry.", text.replace("]}", ",]}").encode()),
        ("single-quotes", "Single-quoted strings.", text.replace('"format"', "'format'").encode()),
        ("comment", "A comment.", (b"// export\n" + data)),
        (
            "control-character",
            "A raw tab inside a string.",
            text.replace("Anonymous", "Anony\tmous").encode(),
        ),
        ("empty-file", "An empty file.", b""),
        ("top-level-array", "A JSON array at the top.", dumps([honest])),
        (
            "wrong-format",
            "format amply-ledger-export/v2.",
            text.replace("export/v1", "export/v2").encode(),
        ),
        (
            "no-format",
            "No format member.",
            dumps({k: v for k, v in honest.items() if k != "format"}),
        ),
        (
            "kind-unknown",
            "Chain kind 'charity'.",
            text.replace('"organisation"', '"charity"').encode(),
        ),
        (
            "kind-prefix",
            "A wallet kind with an org_ id.",
            text.replace('"organisation"', '"wallet"').encode(),
        ),
        (
            "chain-id-number",
            "Chain id a number.",
            text.replace(f'"id":"{ORG}"', '"id":7', 1).encode(),
        ),
        (
            "chain-id-surrogate",
            "Chain id with a lone surrogate.",
            text.replace(f'"id":"{ORG}"', '"id":"org_\\ud800"', 1).encode(),
        ),
        ("entries-object", "entries is an object.", dumps({**honest, "entries": {}})),
        (
            "entries-missing",
            "No entries member.",
            dumps({k: v for k, v in honest.items() if k != "entries"}),
        ),
        (
            "head-missing",
            "No head member.",
            dumps({k: v for k, v in honest.items() if k != "head"}),
        ),
        (
            "head-seq-string",
            'head seq "3".',
            dumps({**honest, "head": {"seq": "3", "entry_hash": base[-1]["entry_hash"]}}),
        ),
        (
            "head-seq-bool",
            "head seq true.",
            dumps({**honest, "head": {"seq": True, "entry_hash": None}}),
        ),
        (
            "head-hash-number",
            "head entry_hash 0.",
            dumps({**honest, "head": {"seq": 3, "entry_hash": 0}}),
        ),
        (
            "entries-before-chain",
            "entries before chain: §4.1 order.",
            dumps(
                {
                    "format": honest["format"],
                    "head": honest["head"],
                    "checkpoint": honest["checkpoint"],
                    "entries": honest["entries"],
                    "chain": honest["chain"],
                }
            ),
        ),
        (
            "deep-nesting",
            "An unknown member nested 10,000 deep.",
            text.replace('"entries":', '"x":' + "[" * 10000 + "]" * 10000 + ',"entries":').encode(),
        ),
    ):
        verify(f"unreadable-{name}", f"Unreadable: {description}", content, exit=2, covers="§4.1")


def extension_cases() -> None:
    base = chain([2500, -103, 5000, 750, -20])
    old = export(copy.deepcopy(base[:3]))
    new = export(copy.deepcopy(base))

    def pair(
        name: str,
        description: str,
        first: Any,
        second: Any,
        *,
        exit: int,  # noqa: A002
        seq: int | None = None,
    ) -> None:
        case(
            f"extension-{name}",
            description,
            files={"old.json": first, "new.json": second},
            args=["old.json", "new.json", "--key", KEY],
            exit=exit,
            seq=seq,
            covers="§4.4",
        )

    pair("extends", "NEW extends OLD.", old, new, exit=0)
    pair("identical", "NEW is OLD.", old, old, exit=0)
    pair("old-empty", "OLD is empty.", export([]), new, exit=0)
    pair("new-shorter", "NEW (3 entries) is shorter than OLD (5).", new, old, exit=1, seq=4)
    rewritten = copy.deepcopy(base)
    rewritten[1]["metadata"] = '{"donor":"Mallory"}'
    pair(
        "rewritten",
        "NEW rewrote entry 2 (re-signed): two signed checkpoints prove it.",
        old,
        export(relink(rewritten, 1)),
        exit=1,
        seq=2,
    )
    late = copy.deepcopy(base)
    late[2]["metadata"] = "{}"
    pair(
        "rewritten-at-old-head",
        "NEW differs exactly at OLD's head.",
        old,
        export(relink(late, 2)),
        exit=1,
        seq=3,
    )
    pair(
        "different-chains",
        "OLD and NEW of different chains.",
        old,
        export(chain([1, 2, 3, 4], chain_id="org_Another")),
        exit=1,
    )
    broken_old = copy.deepcopy(old)
    broken_old["entries"][1]["metadata"] = "{}"
    pair("old-broken", "OLD is broken at 2: its seq is named.", broken_old, new, exit=1, seq=2)
    broken_new = copy.deepcopy(new)
    broken_new["entries"][3]["metadata"] = "{}"
    pair("new-broken", "NEW is broken at 4.", old, broken_new, exit=1, seq=4)
    pair("old-unreadable", "OLD is not JSON.", b"{", new, exit=2)
    case(
        "extension-three-files",
        "Three files: give one export or two.",
        files={"old.json": old, "new.json": new},
        args=["old.json", "new.json", "new.json", "--key", KEY],
        exit=2,
        covers="§4.4",
    )


def receipt_cases() -> None:
    metadata = {
        2: json.dumps(
            {
                "charge": "ch_1",
                "donation_id": DONATION,
                "donor": "Anonymous",
                "fund_id": None,
                "payment_intent": "pi_1",
                "platform_fee": 0,
                "receipt_commitment": COMMITMENT,
            },
            separators=(",", ":"),
            sort_keys=True,
        ),
        3: json.dumps(
            {
                "balance_transaction": "txn_1",
                "charge": "ch_1",
                "donation_id": DONATION,
                "fund_id": None,
            },
            separators=(",", ":"),
            sort_keys=True,
        ),
    }
    base = chain([1000, 2500, -103, 700], metadata=metadata, types={3: "payment_processing_fee"})
    honest = export(base)
    covered = base[:3]

    def receipt(entries: list[dict[str, Any]] = base, *, seq: int = 2) -> dict[str, Any]:
        item = entries[seq - 1]
        last = covered[-1]
        return {
            "format": "amply-donation-receipt/v1",
            "donation": {
                "id": DONATION,
                "organisation_id": ORG,
                "fund_id": None,
                "amount": 2500,
                "currency": "EUR",
                "status": "completed",
                "completed_at": "2026-11-21T09:30:02Z",
            },
            "entry": {
                "chain_id": ORG,
                "seq": seq,
                "id": item["id"],
                "entry_hash": item["entry_hash"],
            },
            "commitment": {
                "scheme": "amply-receipt-commitment/v1",
                "salt": SALT,
                "secret": SECRET,
                "value": COMMITMENT,
            },
            "checkpoint": {
                "note": SIGNER.sign(body_for(ORG, 3, last["entry_hash"])),
                "key": KEY,
            },
        }

    def rcase(
        name: str,
        description: str,
        first: Any,
        second: Any = honest,
        *,
        exit: int,  # noqa: A002
        seq: int | None = None,
        key: str | None = KEY,
    ) -> None:
        case(
            f"receipt-{name}",
            description,
            files={"receipt.json": first, "export.json": second},
            args=["receipt.json", "export.json"] + (["--key", key] if key else []),
            exit=exit,
            seq=seq,
            command="verify-receipt",
            covers="§7",
        )

    def changed(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
        made = receipt()
        change(made)
        return made

    rcase("honest", "An honest receipt.", receipt(), exit=0)
    rcase("honest-unpinned", "An honest receipt, no --key.", receipt(), exit=0, key=None)
    legacy_meta = dict(metadata)
    legacy_meta[2] = json.dumps(
        {
            "donation_id": DONATION,
            "donor": "Anonymous",
            "fund_id": None,
            "receipt_commitment": None,
        },
        separators=(",", ":"),
        sort_keys=True,
    )
    legacy = chain(
        [1000, 2500, -103, 700], metadata=legacy_meta, types={3: "payment_processing_fee"}
    )
    covered_legacy = legacy[:3]
    legacy_receipt = receipt(legacy)
    legacy_receipt["commitment"].update(salt=None, value=None)
    legacy_receipt["checkpoint"]["note"] = SIGNER.sign(
        body_for(ORG, 3, covered_legacy[-1]["entry_hash"])
    )
    rcase(
        "legacy-null-salt",
        "A donation from before commitments: null salt and value, rules 1, 2 and 4.",
        legacy_receipt,
        export(legacy),
        exit=0,
    )
    null_salt = receipt()
    null_salt["commitment"].update(salt=None, value=None)
    rcase(
        "null-salt-but-committed",
        "A null-salt receipt for an entry that carries a commitment: refused.",
        null_salt,
        exit=1,
        seq=2,
    )
    rcase(
        "wrong-salt",
        "Another salt.",
        changed(lambda r: r["commitment"].update(salt="00" * 32)),
        exit=1,
        seq=2,
    )
    rcase(
        "wrong-secret",
        "Another secret.",
        changed(lambda r: r["commitment"].update(secret="00" * 32)),
        exit=1,
        seq=2,
    )
    rcase(
        "wrong-value",
        "A value that is not the commitment of the salt and secret.",
        changed(lambda r: r["commitment"].update(value="sha256:" + "0" * 64)),
        exit=1,
        seq=2,
    )
    rcase(
        "wrong-amount",
        "Another amount.",
        changed(lambda r: r["donation"].update(amount=2400)),
        exit=1,
        seq=2,
    )
    rcase(
        "wrong-currency",
        "Another currency.",
        changed(lambda r: r["donation"].update(currency="USD")),
        exit=1,
        seq=2,
    )
    rcase(
        "wrong-organisation",
        "organisation_id not the export's chain.",
        changed(lambda r: r["donation"].update(organisation_id="org_Another")),
        exit=1,
        seq=2,
    )
    rcase(
        "wrong-donation",
        "Another donation id.",
        changed(lambda r: r["donation"].update(id="don_Other")),
        exit=1,
        seq=2,
    )
    rcase(
        "wrong-entry-hash",
        "The receipt's entry_hash is not the export's.",
        changed(lambda r: r["entry"].update(entry_hash="sha256:" + "0" * 64)),
        exit=1,
        seq=2,
    )
    rcase(
        "not-a-donation",
        "The receipt points at the fee entry (seq 3).",
        receipt(seq=3),
        exit=1,
        seq=3,
    )
    rcase(
        "seq-beyond-export",
        "A seq the export does not have.",
        changed(lambda r: r["entry"].update(seq=9)),
        exit=1,
        seq=9,
    )
    broken = export(copy.deepcopy(base))
    broken["entries"][0]["metadata"] = "{}"
    rcase("export-broken", "The export is broken at 1.", receipt(), broken, exit=1, seq=1)
    rcase(
        "checkpoint-not-covering",
        "The receipt's checkpoint covers 1 entry, not entry 2.",
        changed(
            lambda r: r["checkpoint"].update(
                note=SIGNER.sign(body_for(ORG, 1, base[0]["entry_hash"]))
            )
        ),
        exit=1,
    )
    rcase(
        "checkpoint-newer-than-export",
        "The receipt's checkpoint covers 3, the export only 2.",
        receipt(),
        export(copy.deepcopy(base[:2])),
        exit=1,
    )
    rcase(
        "checkpoint-forged",
        "The receipt's checkpoint signed by a forger, Amply's key pinned.",
        changed(
            lambda r: r["checkpoint"].update(
                note=FORGER.sign(body_for(ORG, 3, base[2]["entry_hash"])), key=FORGER_KEY
            )
        ),
        exit=1,
    )
    rcase(
        "checkpoint-rewritten-history",
        "The receipt's checkpoint is of another history at size 3.",
        changed(
            lambda r: r["checkpoint"].update(
                note=SIGNER.sign(body_for(ORG, 3, "sha256:" + "ab" * 32))
            )
        ),
        exit=1,
    )
    rcase(
        "checkpoint-three-lines",
        "The receipt's checkpoint has three lines.",
        changed(
            lambda r: r["checkpoint"].update(
                note=SIGNER.sign(
                    "\n".join(body_for(ORG, 3, base[2]["entry_hash"]).split("\n")[:3]) + "\n"
                )
            )
        ),
        exit=1,
    )
    surrogate = dumps(receipt()).decode().replace(f"{NAME}/ledger/", f"{NAME}/\\ud800ledger/", 1)
    rcase(
        "checkpoint-lone-surrogate",
        "A lone surrogate in the receipt's checkpoint note.",
        surrogate.encode(),
        exit=1,
    )
    for name, description, change in (
        ("amount-fraction", "amount 2500.0", lambda r: r["donation"].update(amount=2500.0)),
        ("seq-string", 'seq "2"', lambda r: r["entry"].update(seq="2")),
        ("seq-zero", "seq 0", lambda r: r["entry"].update(seq=0)),
        ("scheme", "another scheme", lambda r: r["commitment"].update(scheme="v0")),
        (
            "salt-null-value-string",
            "salt null, value a string",
            lambda r: r["commitment"].update(salt=None),
        ),
        ("salt-not-hex", "salt not hex", lambda r: r["commitment"].update(salt="zz" * 32)),
        ("missing-commitment", "no commitment", lambda r: r.pop("commitment")),
        (
            "missing-organisation",
            "no organisation_id",
            lambda r: r["donation"].pop("organisation_id"),
        ),
        ("format", "another format", lambda r: r.update(format="amply-donation-receipt/v0")),
    ):
        rcase(f"unreadable-{name}", f"Unreadable receipt: {description}.", changed(change), exit=2)
    rcase("unreadable-bom", "A receipt with a BOM.", codecs.BOM_UTF8 + dumps(receipt()), exit=2)
    rcase("unreadable-not-json", "A receipt that is not JSON.", b"receipt", exit=2)
    rcase("unreadable-export", "The export is truncated.", receipt(), dumps(honest)[:200], exit=2)


def main() -> None:
    shutil.rmtree(ROOT / "cases", ignore_errors=True)
    honest_cases()
    rule_cases()
    head_and_checkpoint_cases()
    key_cases()
    unreadable_cases()
    extension_cases()
    receipt_cases()
    manifest = {
        "format": "amply-conformance/v1",
        "description": "Conformance vectors for verifiers of Amply's ledger format "
        "(docs/ledger-format.md): run each case's command with its args from this directory; "
        "the exit code must be `exit`, and with exit 1 the seq named must be `seq`.",
        "keys": {"amply": KEY, "forger": FORGER_KEY, "retired": OLD_VKEY},
        "cases": CASES,
    }
    (ROOT / "manifest.json").write_text(
        json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    print(f"{len(CASES)} cases")


if __name__ == "__main__":
    main()
