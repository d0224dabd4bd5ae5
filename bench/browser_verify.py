"""In-browser verification of a long chain (the public site's "Verify in your browser") in
headless Chromium, beside the Python verifier ``amply verify`` on the same export in the same
run.

    python -m bench.browser_verify [--entries 100000] [--runs 3]

1. Writes a signed export of ``--entries`` entries (bench.transparency's chain, signed with a
   fresh key) and a keys document naming that key, into a temporary directory.
2. Serves them, with the site's static files, from a loopback HTTP server in this process.
3. In Debian's Chromium (``/usr/bin/chromium``, driven by Playwright), the site's Web Worker
   downloads the export and the keys, parses the file strictly, checks every hash, link and
   balance with WebCrypto SHA-256 and the checkpoint's Ed25519 signature: timed from the
   message to the worker to its verdict, best of ``--runs``.
4. Baseline: ``amply verify --key KEYS EXPORT`` in a process of its own, on the same file.

Prints entries per second of each and the ratio browser / Python (above 1: the browser is
faster). The issue's target: 100,000 entries in under 10 s in the browser.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import ClassVar

from amply.ledger.signing import NoteSigner
from bench.transparency import prefix_export

STATIC = Path(__file__).resolve().parents[1] / "src" / "amply" / "site" / "static"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGE = b"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>bench</title>
</head><body><p>bench</p></body></html>"""


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map: ClassVar[dict[str, str]] = {
        ".js": "text/javascript",
        ".json": "application/json",
        "": "text/plain",
    }

    def do_GET(self) -> None:
        if self.path == "/":
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(PAGE)))
            self.end_headers()
            self.wfile.write(PAGE)
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_Handler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


VERIFY_IN_WORKER = """async ([exportUrl, keysUrl]) => {
  const worker = new Worker("/static/verify-worker.js", { type: "module" });
  const started = performance.now();
  const result = await new Promise((resolve) => {
    worker.onmessage = (event) => { if (event.data.type === "result") resolve(event.data); };
    worker.postMessage({ type: "verify", exportUrl, keysUrl });
  });
  worker.terminate();
  return { ...result, wall: (performance.now() - started) / 1000 };
}"""


def browser_runs(url: str, runs: int) -> list[dict[str, object]]:
    from playwright.sync_api import sync_playwright

    outcomes = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(url + "/")
        for _ in range(runs):
            outcomes.append(page.evaluate(VERIFY_IN_WORKER, ["/export.json", "/keys.json"]))
        browser.close()
    return outcomes


def python_verify(export: Path, keys: Path) -> tuple[float, str]:
    command = [sys.executable, "-m", "amply.cli", "verify", "--no-progress", "--key", str(keys)]
    started = time.perf_counter()
    run = subprocess.run([*command, str(export)], capture_output=True, text=True, check=False)  # noqa: S603
    elapsed = time.perf_counter() - started
    if run.returncode != 0:
        raise SystemExit(f"amply verify failed: {run.stdout}{run.stderr}")
    return elapsed, run.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="amply-bench-browser-") as name:
        root = Path(name)
        (root / "static").symlink_to(STATIC)
        signer = NoteSigner.generate("amply.bench")
        export = root / "export.json"
        prefix_export(args.entries, signer, export)
        keys = root / "keys.json"
        listed = [{"key": signer.verifier_key.encode(), "status": "active"}]
        keys.write_text(json.dumps({"data": listed}))
        size = export.stat().st_size
        print(f"export: {args.entries:,} entries, {size / 1e6:,.1f} MB")
        server, url = serve(root)
        try:
            outcomes = browser_runs(url, args.runs)
        finally:
            server.shutdown()
        for outcome in outcomes:
            if outcome.get("exit") != 0:
                raise SystemExit(f"the browser did not verify the chain: {outcome}")
        walls = [float(str(o["wall"])) for o in outcomes]
        best = min(walls)
        fastest = outcomes[walls.index(best)]["phases"]
        assert isinstance(fastest, dict)
        phases = ", ".join(f"{name} {float(value):.2f} s" for name, value in fastest.items())
        python_seconds, verdict = python_verify(export, keys)
        print(f"python: {verdict[:100]}…")
        print(
            f"browser (Chromium, Web Worker, WebCrypto): best of {args.runs}: {best:.2f} s, "
            f"{args.entries / best:,.0f} entries/s "
            f"(runs: {', '.join(f'{wall:.2f}' for wall in walls)} s)"
        )
        print(f"  the fastest run's phases in the worker: {phases}")
        print(
            f"python (amply verify, own process): {python_seconds:.2f} s, "
            f"{args.entries / python_seconds:,.0f} entries/s"
        )
        print(f"ratio browser/python (entries/s): {python_seconds / best:.2f}")
        target = "under" if best < 10 else "OVER"
        print(f"target: {args.entries:,} entries in < 10 s in the browser: {target} ({best:.2f} s)")


if __name__ == "__main__":
    main()
