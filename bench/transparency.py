"""Export and offline-verification throughput of a long chain, each beside a baseline of the
same run, and the verifier's peak memory at several lengths.

    python -m bench.transparency [--sizes 100000,500000,1000000]

1. Loads a valid organisation chain of ``--entries`` entries, hashed by the auditors' own code,
   into a throwaway embedded PostgreSQL (in bulk, with the ledger's triggers off, as the owner).
2. Serves the app with ``amply serve`` in a separate process, and downloads the signed export
   from this process over HTTP. The first export also verifies the whole chain on the server
   and signs its first checkpoint; the second one, timed as "export", streams only.
   Baseline: PostgreSQL's own ``COPY … TO STDOUT`` of the same rows to this process.
3. Verifies the download offline with ``amply verify --key``, end to end in a process of its
   own (it streams the file: two processes on two cores), sampling the resident memory of
   that process and of the one it forks every 20 ms; then, in this process, the streaming
   verifier on one core and on all. Baseline: SHA-256 alone over byte strings of the same
   sizes as the entries' preimages (the hashing no verifier can skip).
4. The same ``amply verify --key`` on the first N entries for each smaller size of
   ``--sizes``: an export of that prefix, written here in the server's layout and signed with
   the key the server used, so that memory can be compared across lengths in one run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil  # type: ignore[import-untyped]
import psycopg

from amply.ledger.signing import NoteSigner
from amply.verify import checkpoint_body, verify_export_file
from amply.verify.crypto import canonical_preimage, entry_hash, format_timestamp
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


def hashing_rate(count: int) -> float:
    """Baseline: SHA-256 over byte strings as long as the entries' preimages."""
    sizes = [len(canonical_preimage(entry)) for entry in _entries(count)]
    blobs = {size: bytes(size) for size in set(sizes)}
    started = time.perf_counter()
    for size in sizes:
        hashlib.sha256(blobs[size]).hexdigest()
    return count / (time.perf_counter() - started)


def prefix_export(count: int, signer: NoteSigner, target: Path) -> None:
    """An export of the chain's first ``count`` entries, signed as the server signs."""
    last: dict[str, object] = {}
    with target.open("w", encoding="utf-8") as file:
        body = target.with_suffix(".entries")
        with body.open("w", encoding="utf-8") as entries:
            for seq, entry in enumerate(_entries(count), start=1):
                entries.write(("," if seq > 1 else "") + json.dumps(entry, separators=(",", ":")))
                last = entry
        head = str(last["entry_hash"])
        note = signer.sign(
            checkpoint_body(
                origin=f"{signer.name}/ledger/{CHAIN}",
                size=count,
                root_hash=head,
                time=format_timestamp(datetime.now(UTC)),
            )
        )
        header = {
            "format": "amply-ledger-export/v1",
            "chain": {"id": CHAIN, "kind": "organisation"},
            "head": {"seq": count, "entry_hash": head},
            "checkpoint": {"note": note, "key": signer.verifier_key.encode()},
        }
        file.write(json.dumps(header)[:-1] + ',"entries":[')
        with body.open(encoding="utf-8") as entries:
            while chunk := entries.read(1 << 20):
                file.write(chunk)
        file.write("]}")
        body.unlink()


def cli_verify(export: Path, key: str) -> tuple[float, float, int, int, str]:
    """``amply verify --key`` in a process of its own: seconds, CPU seconds (its own and the
    process it forks), the peak resident memory of both (summed at each sample), the peak of
    either alone, and the verdict."""
    command = [sys.executable, "-m", "amply.cli", "verify", "--no-progress", "--key", key]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and CLI
        [*command, str(export)], stdout=subprocess.PIPE, text=True
    )
    watched = psutil.Process(process.pid)
    peak_sum = peak_one = 0
    while process.poll() is None:
        try:
            tree = [watched, *watched.children(recursive=True)]
            sizes = [p.memory_info().rss for p in tree]
        except psutil.NoSuchProcess:
            continue
        peak_sum, peak_one = max(peak_sum, sum(sizes)), max(peak_one, *sizes)
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    verdict = process.stdout.read() if process.stdout else ""
    if process.returncode != 0:
        raise SystemExit(f"amply verify failed: {verdict}")
    return elapsed, cpu, peak_sum, peak_one, verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,500000,1000000")
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.sizes.split(","))
    count = sizes[-1]
    signer = NoteSigner.generate("amply.bench")
    key = signer.verifier_key.encode()
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
        runs = {count: cli_verify(export, key)}
        checked: dict[int, float] = {}
        for workers in sorted({1, os.cpu_count() or 1}):
            checking = time.perf_counter()
            result = verify_export_file(export, keys=[signer.verifier_key], workers=workers)
            checked[workers] = time.perf_counter() - checking
            assert result.ok, result.verdict()
            assert result.entries_checked == count
        for smaller in sizes[:-1]:
            prefix = Path(directory) / f"export-{smaller}.json"
            prefix_export(smaller, signer, prefix)
            runs[smaller] = cli_verify(prefix, key)
            prefix.unlink()
        hashed = hashing_rate(count)

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
        f"verify: stream, check entries + checkpoint {verified:12,.0f} entries/s   "
        f"ratio {verified / hashed:.2f}   ({cores} process(es))"
    )
    print(
        f"verify: the same in one process      {count / checked[1]:12,.0f} entries/s   "
        f"ratio {count / checked[1] / hashed:.2f}"
    )
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("amply verify --key, end to end (start, read, check), target >= 200,000/s, <= 200 MB:")
    for entries, (elapsed, cpu, peak_sum, peak_one, verdict) in sorted(runs.items()):
        print(
            f"  {entries:>9,} entries: {elapsed:6.1f} s {entries / elapsed:10,.0f} entries/s   "
            f"CPU {cpu:5.1f} s ({entries / cpu:,.0f} entries per CPU-second)   "
            f"peak RSS {peak_sum / 2**20:6.1f} MiB (both processes; largest alone "
            f"{peak_one / 2**20:.1f} MiB)   {verdict.split(' verifies')[0]}"
        )


if __name__ == "__main__":
    main()
