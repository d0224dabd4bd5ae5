// The Web Worker of "Verify in your browser": downloads an export and Amply's published keys,
// checks every entry with verify-core.js and posts progress, then one verdict.
//
// Messages in:  {type: "verify", exportUrl, keysUrl}  a chain, keys pinned from keysUrl
//               {type: "run", command, args, files}   `amply verify …` over given files (tests)
//               {type: "receipt", donation, token, keysUrl}  a donor's receipt (§7)
// Messages out: {type: "progress", phase: "download" | "parse" | "verify", done, total}
//               {type: "result", exit, result, error, detail, seconds}

import {
  Unreadable,
  entryHash,
  keysFromDocument,
  loadsStrict,
  runCommand,
  verifyDocument,
  verifyReceipt,
} from "./verify-core.js";

const post = (message) => self.postMessage(message);

async function download(url, phase, headers = {}) {
  const response = await fetch(url, { headers: { Accept: "application/json", ...headers } });
  if (!response.ok) throw new Unreadable(`${url} answered HTTP ${response.status}`);
  const total = Number(response.headers.get("Content-Length")) || 0;
  const chunks = [];
  let size = 0;
  let last = 0;
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.length;
    if (size - last > 1 << 20) {
      last = size;
      post({ type: "progress", phase, done: size, total });
    }
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return bytes;
}

// What differs at the broken entry: its stored hash beside the recomputed one, its links.
async function describe(doc, result) {
  const n = result.broken_seq;
  const entries = doc && Array.isArray(doc.entries) ? doc.entries : [];
  if (!n || n > entries.length) return null;
  const e = entries[n - 1];
  const plain = (v) => (typeof v === "bigint" ? String(v) : v);
  const detail = { seq: n, fields: {} };
  if (e && typeof e === "object") {
    for (const [k, v] of Object.entries(e)) detail.fields[k] = typeof v === "object" && v !== null ? String(v.value ?? v.text ?? v) : plain(v);
    try {
      detail.recomputed_hash = await entryHash(e);
    } catch {
      detail.recomputed_hash = null;
    }
    detail.previous_hash = n > 1 && entries[n - 2] ? entries[n - 2].entry_hash : null;
  }
  return detail;
}

async function verifyChain({ exportUrl, keysUrl }) {
  const started = performance.now();
  let doc = null;
  try {
    const keys = keysUrl ? await keysFromDocument(loadsStrict(await download(keysUrl, "keys"), "the keys")) : [];
    const bytes = await download(exportUrl, "download");
    const downloaded = performance.now();
    post({ type: "progress", phase: "parse", done: bytes.length, total: bytes.length });
    doc = loadsStrict(bytes, "the export");
    const parsed = performance.now();
    const result = await verifyDocument(doc, {
      keys,
      progress: (done, total) => post({ type: "progress", phase: "verify", done, total }),
    });
    const detail = result.ok ? null : await describe(doc, result);
    const now = performance.now();
    const seconds = (now - started) / 1000;
    const phases = { download: (downloaded - started) / 1000, parse: (parsed - downloaded) / 1000, verify: (now - parsed) / 1000 };
    post({ type: "result", exit: result.ok ? 0 : 1, result, detail, seconds, phases, bytes: bytes.length });
  } catch (error) {
    if (!(error instanceof Unreadable)) console.error(error);
    post({ type: "result", exit: 2, error: error.message, seconds: (performance.now() - started) / 1000 });
  }
}

// The receipt (its token in a header, never in a URL), then the organisation's export.
async function checkReceipt({ donation, token, keysUrl }) {
  const started = performance.now();
  let plain = null;
  try {
    const url = `/v1/donations/${encodeURIComponent(donation)}/receipt`;
    let bytes = null;
    for (let attempt = 0; attempt < 10 && bytes === null; attempt++) {
      const response = await fetch(url, { headers: { "X-Receipt-Token": token, Accept: "application/json" } });
      if (response.status === 409) {
        await new Promise((resolve) => setTimeout(resolve, 500)); // not on the ledger yet
        continue;
      }
      if (!response.ok) throw new Unreadable(`the receipt could not be fetched (HTTP ${response.status})`);
      bytes = new Uint8Array(await response.arrayBuffer());
    }
    if (bytes === null) throw new Unreadable("the donation is not on the ledger yet: try again in a minute");
    const receipt = loadsStrict(bytes, "the receipt");
    plain = JSON.parse(new TextDecoder().decode(bytes));
    const keys = await keysFromDocument(loadsStrict(await download(keysUrl, "keys"), "the keys"));
    const organisation = String(receipt?.donation?.organisation_id ?? "");
    const exportUrl = `/v1/public/organisations/${encodeURIComponent(organisation)}/ledger/export`;
    const result = await verifyReceipt(receipt, async () => {
      const data = await download(exportUrl, "download");
      post({ type: "progress", phase: "parse", done: data.length, total: data.length });
      return loadsStrict(data, "the export");
    }, { keys, progress: (done, total) => post({ type: "progress", phase: "verify", done, total }) });
    delete result.export;
    delete result.entry;
    post({ type: "result", exit: result.ok ? 0 : 1, result, receipt: plain, seconds: (performance.now() - started) / 1000 });
  } catch (error) {
    if (!(error instanceof Unreadable)) console.error(error);
    post({ type: "result", exit: 2, error: error.message, receipt: plain });
  }
}

self.onmessage = async (event) => {
  const message = event.data;
  if (message.type === "verify") {
    await verifyChain(message);
  } else if (message.type === "receipt") {
    await checkReceipt(message);
  } else if (message.type === "run") {
    const outcome = await runCommand(message.command, message.args, message.files);
    post({ type: "result", id: message.id, ...outcome });
  }
};
