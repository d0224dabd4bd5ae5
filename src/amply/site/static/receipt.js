// The donor's receipt page: the donation id and receipt token come from the URL's fragment
// (never sent to a server); the receipt is fetched with the token in a header, and the Web
// Worker checks it against the organisation's export and Amply's keys (ledger format §7).

const root = document.getElementById("receipt");
const status = document.getElementById("receipt-status");
const facts = document.getElementById("receipt-facts");
const out = document.getElementById("receipt-result");
// From the link's fragment, or (after a reload, the fragment gone) from this tab's storage.
function stored() {
  try {
    return JSON.parse(sessionStorage.getItem("amply-receipt") ?? "{}");
  } catch {
    return {};
  }
}
const fragment = new URLSearchParams(location.hash.slice(1));
const donation = fragment.get("donation") ?? stored().donation;
const token = fragment.get("token") ?? stored().token;

function fact(term, value) {
  const row = document.createElement("div");
  const dt = document.createElement("dt");
  const dd = document.createElement("dd");
  dt.textContent = term;
  dd.textContent = value;
  row.append(dt, dd);
  facts.append(row);
}

function money(amount, currency) {
  const n = BigInt(amount);
  const sign = n < 0n ? "−" : "";
  const m = n < 0n ? -n : n;
  return `${sign}${(m / 100n).toLocaleString("en-GB")}.${String(m % 100n).padStart(2, "0")} ${currency}`;
}

function verdict(ok, text) {
  const box = document.createElement("div");
  box.className = `verdict ${ok ? "ok" : "bad"}`;
  box.dataset.ok = String(ok);
  const strong = document.createElement("strong");
  strong.textContent = ok ? "Proven" : "Not proven";
  const p = document.createElement("p");
  p.textContent = text;
  box.append(strong, p);
  out.replaceChildren(box);
}

async function main() {
  if (!donation || !token) {
    status.textContent = "This page needs your receipt link (it ends with #donation=…&token=…).";
    return;
  }
  history.replaceState(null, "", location.pathname); // the token leaves the address bar
  try {
    sessionStorage.setItem("amply-receipt", JSON.stringify({ donation, token }));
  } catch {
    // storage refused: the page still works for this visit
  }
  const worker = new Worker(root.dataset.workerUrl, { type: "module" });
  worker.onmessage = (event) => {
    const m = event.data;
    if (m.type === "progress") {
      status.textContent = m.phase === "verify" ? `Checking the ledger: ${m.done.toLocaleString("en-GB")} of ${m.total.toLocaleString("en-GB")} entries…` : "Downloading the ledger…";
      return;
    }
    if (m.type !== "result") return;
    worker.terminate();
    if (m.receipt) {
      const d = m.receipt.donation;
      facts.hidden = false;
      fact("Donation", d.id);
      fact("Amount", money(d.amount, d.currency));
      fact("Status", d.status);
      if (d.completed_at) fact("Completed", d.completed_at);
      fact("Ledger entry", `${m.receipt.entry.seq} of chain ${m.receipt.entry.chain_id}`);
      fact("Entry hash", m.receipt.entry.entry_hash);
    }
    if (m.exit === 0) {
      const r = m.result;
      status.textContent = "Done.";
      verdict(true, `Your donation is entry ${r.seq} of ${r.chain_id}'s public ledger: your receipt opens the entry's commitment (nobody else's can), the whole ledger verifies, and Amply's checkpoint of ${r.checkpoint.size} entries, signed by ${r.checkpoint.key.split("+").slice(0, 2).join("+")}, covers it.`);
    } else if (m.exit === 1) {
      status.textContent = "Done.";
      verdict(false, `The check failed${m.result.broken_seq ? ` at entry ${m.result.broken_seq}` : ""}: ${m.result.reason}.`);
    } else {
      status.textContent = "Done.";
      verdict(false, `Your receipt could not be checked: ${m.error}`);
    }
  };
  worker.postMessage({ type: "receipt", donation, token, keysUrl: root.dataset.keysUrl });
}

main();
