// "Verify in your browser": runs verify-worker.js (a Web Worker) over the organisation's
// export and Amply's published keys, shows its progress and a verdict a person reads.

const root = document.getElementById("verifier");
const button = document.getElementById("verify-button");
const bar = document.getElementById("verify-progress");
const status = document.getElementById("verify-status");
const out = document.getElementById("verify-result");
const number = (n) => Number(n).toLocaleString("en-GB");

function paragraph(text, tag = "p") {
  const element = document.createElement(tag);
  element.textContent = text;
  return element;
}

function keyLabel(key) {
  const [name, id] = key.split("+");
  return `${name}+${id}`;
}

// One sentence for the verdict, then what differs.
export function sentence(message) {
  if (message.exit === 2) return { ok: false, text: `The export could not be read: ${message.error}` };
  const r = message.result;
  if (r.ok) {
    const cp = r.checkpoint;
    const signed = cp ? `; head ${r.head_hash} signed by ${keyLabel(cp.key)} on ${cp.time.replace("T", " ").replace(/\.\d+Z$/, " UTC")}` : "";
    return { ok: true, text: `All ${number(r.entries_checked)} entries verified${signed}.` };
  }
  if (r.broken_seq === null) {
    return { ok: false, text: `All ${number(r.entries_checked)} entries are consistent, but the signed checkpoint fails: ${r.reason}.` };
  }
  if (r.reason.startsWith("entry_hash does not match")) {
    return { ok: false, text: `Entry ${number(r.broken_seq)} does not match its hash.` };
  }
  if (r.reason.startsWith("declared head")) {
    return { ok: false, text: `The export's declared head does not match its last entry (entry ${number(r.broken_seq)}): ${r.reason}.` };
  }
  return { ok: false, text: `Entry ${number(r.broken_seq)} breaks the chain: ${r.reason}.` };
}

function show(message) {
  const verdict = sentence(message);
  out.replaceChildren();
  const box = document.createElement("div");
  box.className = `verdict ${verdict.ok ? "ok" : "bad"}`;
  box.dataset.exit = String(message.exit);
  if (message.result) box.dataset.brokenSeq = String(message.result.broken_seq ?? "");
  box.append(paragraph(verdict.ok ? "Verified" : "Not verified", "strong"), paragraph(verdict.text));
  const d = message.detail;
  if (d && d.fields) {
    const lines = [];
    if (d.recomputed_hash && d.recomputed_hash !== d.fields.entry_hash) {
      lines.push(`Stored hash:     ${d.fields.entry_hash}`, `Recomputed hash: ${d.recomputed_hash}`);
    }
    if (d.seq > 1 && d.fields.prev_entry_hash !== d.previous_hash) {
      lines.push(`Its link:        ${d.fields.prev_entry_hash}`, `Entry ${d.seq - 1}'s hash: ${d.previous_hash}`);
    }
    if (lines.length) {
      const pre = paragraph(lines.join("\n"), "pre");
      pre.className = "wrap";
      box.append(pre);
    }
  }
  if (message.seconds !== undefined) box.append(paragraph(`Checked in ${message.seconds.toFixed(1)} s.`));
  out.append(box);
  out.focus();
}

function run() {
  button.disabled = true;
  bar.value = 0;
  status.textContent = "Downloading the ledger…";
  const worker = new Worker(root.dataset.workerUrl, { type: "module" });
  worker.onmessage = (event) => {
    const m = event.data;
    if (m.type === "progress") {
      if (m.phase === "verify") {
        bar.value = Math.floor((100 * m.done) / Math.max(1, m.total));
        status.textContent = `Checked ${number(m.done)} of ${number(m.total)} entries…`;
      } else if (m.phase === "parse") {
        status.textContent = `Downloaded ${(m.done / 1e6).toFixed(1)} MB; reading it…`;
      } else if (m.phase === "download") {
        status.textContent = `Downloaded ${(m.done / 1e6).toFixed(1)} MB…`;
      }
      return;
    }
    if (m.type === "result") {
      bar.value = 100;
      status.textContent = m.exit === 0 ? "Done: verified." : "Done: not verified.";
      show(m);
      worker.terminate();
      button.disabled = false;
    }
  };
  worker.onerror = (event) => {
    status.textContent = `The verifier failed to run: ${event.message}`;
    button.disabled = false;
  };
  worker.postMessage({ type: "verify", exportUrl: root.dataset.exportUrl, keysUrl: root.dataset.keysUrl });
}

button.addEventListener("click", run);
button.disabled = false;
if (new URLSearchParams(location.search).has("run")) run();
