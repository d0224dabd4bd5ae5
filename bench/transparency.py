"""Export and offline-verification throughput of a long chain, each beside a baseline of the
same run.

    python -m bench.transparency [--entries 1000000]

1. Loads a valid organisation chain of ``--entries`` entries, hashed by the auditors' own code,
   into a throwaway embedded PostgreSQL (in bulk, with the ledger's triggers off, as the owner).
2. Serves the app with ``amply serve`` in a separate process, and downloads the signed export
   from this process over HTTP. The first export also verifies the whole chain on the server
   and signs its first checkpoint; the second one, timed as "export", streams only.
   Baseline: PostgreSQL's own ``COPY … TO STDOUT`` of the same rows to this process.
3. Verifies the download offline: ``amply verify --key`` end to end in a process of its own,
   then, in this one, reading the JSON and checking every entry and the checkpoint apart.
   Baseline: SHA-256 alone over byte strings of the same sizes as the entries' preimages (the
   hashing no verifier can skip).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

from amply.lib.crypto import canonical_preimage, entry_hash, format_timestamp
from amply.lib.signing import NoteSigner
from amply.lib.verify import read_export, verify_export
from bench._common import free_port, migrated_database

CHAIN = "org_BenchTransparency0000001"
COLUMNS = (
    "chain_id, seq, id, type, amount, currency, balance_after, metadata, journal_id, "
    "created_at, prev_entry_hash, internal, entry_hash"
)


def _entries(count: int) -> Iterator[dict[str, object]]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    previous = None
    for seq in range(1, count + 1):
        entry: dict[str, object] = {
            "chain_id": CHAIN,
            "seq": seq,
            "id": f"led_{seq:024d}",
            "type": "donation_received",
            "amount": 2500,
            "currency": "EUR",
            "balance_after": 2500 * seq,
            "metadata": '{"donation_id":"don_Q8w7E6r5T4y3U2i1O0p9A8s7","donor":"Anonymous",'
            '"fund_id":null,"platform_fee":0}',
            "journal_id": f"jrn_{seq:024d}",
            "created_at": format_timestamp(start + timedelta(milliseconds=seq)),
            "prev_entry_hash": previous,
        }
        previous = entry_hash(entry)
        entry["entry_hash"] = previous
        yield entry


def load_chain(owner_url: str, count: int) -> None:
    with psycopg.connect(owner_url, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO ledger_chains (id, kind) VALUES (%s, 'organisation')", (CHAIN,)
        )
        connection.execute("ALTER TABLE ledger_entries DISABLE TRIGGER USER")
        try:
            with connection.cursor().copy(f"COPY ledger_entries ({COLUMNS}) FROM STDIN") as copy:
                for entry in _entries(count):
                    values = list(entry.values())
                    copy.write_row([*values[:-1], False, values[-1]])
        finally:
            connection.execute("ALTER TABLE ledger_entries ENABLE TRIGGER USER")


def copy_rate(app_url: str, count: int) -> float:
    """Baseline: the same rows, straight out of PostgreSQL with COPY."""
    started = time.perf_counter()
    with psycopg.connect(app_url) as connection, connection.cursor() as cursor:
        query = (
            "COPY (SELECT seq, id, type, amount, currency, balance_after, metadata, journal_id,"
            " created_at, prev_entry_hash, entry_hash FROM ledger_entries"
            f" WHERE chain_id = '{CHAIN}' ORDER BY seq) TO STDOUT"
        )
        with cursor.copy(query) as copy:
            for _ in copy:
                pass
    return count / (time.perf_counter() - started)


def serve(app_url: str, owner_url: str, signer: NoteSigner) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": app_url,
        "DATABASE_MIGRATION_URL": owner_url,
        "AMPLY_ENVIRONMENT": "development",
        "AMPLY_CHECKPOINT_SIGNING_KEY": signer.encode(),
        "AMPLY_CHECKPOINT_INTERVAL_SECONDS": "0",
        "AMPLY_LOG_LEVEL": "warning",
    }
    command = [sys.executable, "-m", "amply.cli", "serve", "--port", str(port)]
    process = subprocess.Popen(command, env=env)  # noqa: S603 - our own interpreter and CLI
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/ready").status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.terminate()
    raise SystemExit("amply serve did not become ready")


def download(url: str, target: Path) -> float:
    started = time.perf_counter()
    with (
        httpx.stream(
            "GET", f"{url}/v1/public/organisations/{CHAIN}/ledger/export", timeout=600
        ) as response,
        target.open("wb") as file,
    ):
        response.raise_for_status()
        for chunk in response.iter_raw(1 << 20):
            file.write(chunk)
    return time.perf_counter() - started


def hashing_rate(document: dict[str, object]) -> float:
    """Baseline: SHA-256 over byte strings as long as the entries' preimages."""
    entries = document["entries"]
    assert isinstance(entries, list)
    blobs = [bytes(len(canonical_preimage(entry))) for entry in entries]
    started = time.perf_counter()
    for blob in blobs:
        hashlib.sha256(blob).hexdigest()
    return len(blobs) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args()
    count = args.entries
    signer = NoteSigner.generate("amply.bench")
    with migrated_database() as urls, tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        load_chain(urls.migration, count)
        print(f"loaded {count:,} entries in {time.perf_counter() - started:.1f} s")
        process, url = serve(urls.app, urls.migration, signer)
        try:
            export = Path(directory) / "export.json"
            first = download(url, export)
            copied = copy_rate(urls.app, count)
            streamed = download(url, export)
        finally:
            process.terminate()
            process.wait(timeout=30)
        size = export.stat().st_size
        cli = time.perf_counter()
        key = signer.verifier_key.encode()
        verdict = subprocess.run(  # noqa: S603 - our own interpreter and CLI
            [sys.executable, "-m", "amply.cli", "verify", "--no-progress", "--key", key, export],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        end_to_end = time.perf_counter() - cli
        reading = time.perf_counter()
        document = read_export(export)
        read = time.perf_counter() - reading
        checked: dict[int, float] = {}
        for workers in sorted({1, os.cpu_count() or 1}):
            checking = time.perf_counter()
            result = verify_export(document, keys=[signer.verifier_key], workers=workers)
            checked[workers] = time.perf_counter() - checking
            assert result.ok, result.verdict()
            assert result.entries_checked == count
        hashed = hashing_rate(document)

    exported = count / streamed
    cores = max(checked)
    verified = count / checked[cores]
    print(f"export size: {size / 2**20:,.0f} MiB")
    print(
        f"first export (server verifies the chain, signs, then streams): {first:.1f} s, "
        f"{count / first:,.0f} entries/s"
    )
    print(f"baseline: PostgreSQL COPY TO STDOUT     {copied:12,.0f} entries/s   ratio 1.00")
    print(
        f"export over HTTP (amply serve)        {exported:12,.0f} entries/s   "
        f"ratio {exported / copied:.2f}   (target >= 100,000/s)"
    )
    print(f"baseline: SHA-256 of preimage-sized strings {hashed:12,.0f} entries/s   ratio 1.00")
    print(
        f"verify: check entries + checkpoint    {verified:12,.0f} entries/s   "
        f"ratio {verified / hashed:.2f}   (target >= 200,000/s; {cores} process(es))"
    )
    print(
        f"verify: the same in one process      {count / checked[1]:12,.0f} entries/s   "
        f"ratio {count / checked[1] / hashed:.2f}"
    )
    print(f"verify: reading the JSON             {count / read:12,.0f} entries/s   ({read:.1f} s)")
    print(
        f"amply verify --key, end to end       {count / end_to_end:12,.0f} entries/s   "
        f"({end_to_end:.1f} s: start, read, check) {verdict.split(';')[0]}"
    )


if __name__ == "__main__":
    main()
