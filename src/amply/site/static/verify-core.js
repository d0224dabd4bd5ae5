// Amply's in-browser ledger verifier: docs/ledger-format.md §2-§4, §6 and §7, with the same
// rules, the same first broken seq and the same verdicts (OK / broken / unreadable, exits
// 0 / 1 / 2) as `amply verify` and `amply verify-receipt` (src/amply/verify/, by section).
// Hand-written, no dependencies: SHA-256 and Ed25519 are the browser's WebCrypto.
//
// Exact integers: every JSON integer is read exactly, never rounded through a double: as a
// Number when it is a safe integer (|n| <= 2^53 - 1), as a BigInt beyond (`norm`), so one value
// has one representation and `===` compares values. Every string that holds a lone surrogate
// escape is read as a BadString (not text), every number with a fraction or an exponent as a
// NonInteger: each fails the type checks of rule 1, as in the reference.

export const EXPORT_FORMAT = "amply-ledger-export/v1";
export const RECEIPT_FORMAT = "amply-donation-receipt/v1";
export const COMMITMENT_VERSION = "amply-receipt-commitment/v1";
const KIND_PREFIXES = { organisation: "org_", wallet: "wal_", platform: "plat_" };
const MAX_AMOUNT = 10 ** 15;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const HASH_PREFIX = "sha256:";
const VERSION_NETSTRING = "21:amply-ledger-entry/v1,";
const MAX_DEPTH = 1000;
const MAX_DIGITS = 4300;
const BATCH = 4096;

/** The file is not readable as the format demands (exit 2). */
export class Unreadable extends Error {}
/** A checkpoint or key that is malformed or whose signature fails. */
export class CheckpointError extends Error {}
/** A JSON string holding a lone surrogate: a string by type, but not Unicode text. */
export class BadString {
  constructor(value) {
    this.value = value;
  }
}
/** A JSON number with a fraction or an exponent: never an integer. */
export class NonInteger {
  constructor(text) {
    this.text = text;
  }
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
/** An exact integer in its one representation: a Number when safe, else a BigInt. */
export const norm = (b) => (b >= -MAX_SAFE && b <= MAX_SAFE ? Number(b) : b);
const isInt = (v) => typeof v === "number" || typeof v === "bigint";
/** a + b, exactly. */
function add(a, b) {
  if (typeof a === "number" && typeof b === "number") {
    const sum = a + b;
    if (Number.isSafeInteger(sum)) return sum;
  }
  return norm(BigInt(a) + BigInt(b));
}
const isStr = (v) => typeof v === "string" || v instanceof BadString;
const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v) &&
  !(v instanceof BadString) && !(v instanceof NonInteger);
const has = (o, k) => Object.prototype.hasOwnProperty.call(o, k);
const get = (o, k) => (has(o, k) ? o[k] : undefined);

// -- Strict JSON (§4.1) ------------------------------------------------------------------------

const PLAIN = /[^"\\\u0000-\u001f]*/y;
const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;

class Parser {
  constructor(text, what) {
    this.text = text;
    this.pos = 0;
    this.what = what;
  }
  fail(message) {
    throw new Unreadable(`${this.what} is not strict UTF-8 JSON: ${message} at character ${this.pos}`);
  }
  ws() {
    const t = this.text;
    let p = this.pos;
    for (;;) {
      const c = t.charCodeAt(p);
      if (c === 32 || c === 10 || c === 13 || c === 9) p++;
      else break;
    }
    this.pos = p;
  }
  value(depth) {
    this.ws();
    const c = this.text.charCodeAt(this.pos);
    if (c === 34) return this.string();
    if (c === 123) return this.object(depth + 1);
    if (c === 91) return this.array(depth + 1);
    if (c === 45 || (c >= 48 && c <= 57)) return this.number();
    if (this.text.startsWith("true", this.pos)) { this.pos += 4; return true; }
    if (this.text.startsWith("false", this.pos)) { this.pos += 5; return false; }
    if (this.text.startsWith("null", this.pos)) { this.pos += 4; return null; }
    return this.fail(this.pos >= this.text.length ? "unexpected end" : "expected a value");
  }
  number() {
    NUMBER.lastIndex = this.pos;
    const m = NUMBER.exec(this.text);
    if (m === null) this.fail("malformed number");
    this.pos = NUMBER.lastIndex;
    if (m[1] !== undefined || m[2] !== undefined) return new NonInteger(m[0]);
    const digits = m[0].length - (m[0][0] === "-" ? 1 : 0);
    if (digits <= 15) return Number(m[0]);
    if (digits > MAX_DIGITS) this.fail("an integer of more than 4,300 digits");
    return norm(BigInt(m[0]));
  }
  string() {
    const t = this.text;
    const start = this.pos;
    PLAIN.lastIndex = start + 1;
    PLAIN.exec(t);
    let q = PLAIN.lastIndex;
    if (t.charCodeAt(q) === 34) {
      this.pos = q + 1;
      return t.slice(start + 1, q); // no escape: the text itself
    }
    if (t.charCodeAt(q) !== 92) {
      this.pos = q;
      this.fail(q >= t.length ? "unterminated string" : "a control character in a string");
    }
    // Escapes: find the closing quote (one not escaped), let the native parser read the rest
    // (it refuses control characters and malformed escapes), then look for lone surrogates.
    for (;;) {
      q = t.indexOf('"', q);
      if (q < 0) {
        this.pos = t.length;
        this.fail("unterminated string");
      }
      let k = q - 1;
      while (t.charCodeAt(k) === 92) k--;
      if ((q - 1 - k) % 2 === 0) break;
      q++;
    }
    let value;
    try {
      value = JSON.parse(t.slice(start, q + 1));
    } catch {
      this.pos = start;
      this.fail("a malformed string");
    }
    this.pos = q + 1;
    return value.isWellFormed() ? value : new BadString(value);
  }
  object(depth) {
    if (depth > MAX_DEPTH) this.fail("nested too deeply");
    this.pos++;
    const o = {};
    this.ws();
    if (this.text.charCodeAt(this.pos) === 125) { this.pos++; return o; }
    for (;;) {
      this.ws();
      if (this.text.charCodeAt(this.pos) !== 34) this.fail("expected a member name");
      let name = this.string();
      if (name instanceof BadString) name = name.value; // a name is only compared, never hashed
      if (has(o, name)) this.fail(`duplicate member name ${JSON.stringify(name)}`);
      this.ws();
      if (this.text.charCodeAt(this.pos) !== 58) this.fail("expected ':'");
      this.pos++;
      const v = this.value(depth);
      if (name === "__proto__") Object.defineProperty(o, name, { value: v, enumerable: true, writable: true, configurable: true });
      else o[name] = v;
      this.ws();
      const c = this.text.charCodeAt(this.pos++);
      if (c === 125) return o;
      if (c !== 44) { this.pos--; this.fail("expected ',' or '}'"); }
    }
  }
  array(depth) {
    if (depth > MAX_DEPTH) this.fail("nested too deeply");
    this.pos++;
    const a = [];
    this.ws();
    if (this.text.charCodeAt(this.pos) === 93) { this.pos++; return a; }
    for (;;) {
      a.push(this.value(depth));
      this.ws();
      const c = this.text.charCodeAt(this.pos++);
      if (c === 93) return a;
      if (c !== 44) { this.pos--; this.fail("expected ',' or ']'"); }
    }
  }
}

/** Decode UTF-8 strictly: no byte order mark, no invalid sequence. */
export function decodeStrict(bytes, what = "the file") {
  if (bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
    throw new Unreadable(`${what} starts with a byte order mark: not the format's JSON`);
  }
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new Unreadable(`${what} is not UTF-8`);
  }
}

/** Parse a JSON text as the format demands (§4.1); Unreadable otherwise. */
export function parseText(text, what = "the file") {
  const parser = new Parser(text, what);
  const value = parser.value(0);
  parser.ws();
  if (parser.pos !== text.length) parser.fail("text after the JSON value");
  return value;
}

export function loadsStrict(bytes, what = "the file") {
  return parseText(decodeStrict(bytes, what), what);
}

// -- Hashing -----------------------------------------------------------------------------------

const encoder = new TextEncoder();
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

export function toHex(buffer) {
  const bytes = new Uint8Array(buffer);
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += HEX[bytes[i]];
  return s;
}

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

const utf8Length = (s) => encoder.encode(s).length;

export function netstring(text) {
  return `${utf8Length(text)}:${text},`;
}

/** The preimage of §2.2 as text, its netstring lengths counted in characters: right when the
 * text is ASCII (then it encodes to as many bytes as it has characters). */
function asciiPreimage(e) {
  const n = String(e.seq), a = String(e.amount), b = String(e.balance_after);
  const prev = e.prev_entry_hash === null ? "" : e.prev_entry_hash;
  const { chain_id: c, id: i, type: t, currency: cur, metadata: m, journal_id: j, created_at: ts } = e;
  return `${VERSION_NETSTRING}${c.length}:${c},${n.length}:${n},${i.length}:${i},${t.length}:${t},` +
    `${a.length}:${a},${cur.length}:${cur},${b.length}:${b},${m.length}:${m},${j.length}:${j},` +
    `${ts.length}:${ts},${prev.length}:${prev},`;
}

function unicodePreimage(e) {
  const prev = e.prev_entry_hash === null ? "" : e.prev_entry_hash;
  const fields = ["amply-ledger-entry/v1", e.chain_id, String(e.seq), e.id, e.type, String(e.amount),
    e.currency, String(e.balance_after), e.metadata, e.journal_id, e.created_at, prev];
  return encoder.encode(fields.map(netstring).join(""));
}

// Preimages of a batch, encoded into one reused buffer (digest copies its input at once).
let batchBuffer = new Uint8Array(1 << 22);

function preimages(entries) {
  const texts = entries.map(asciiPreimage);
  let need = 0;
  for (const text of texts) need += text.length * 3;
  if (batchBuffer.length < need) batchBuffer = new Uint8Array(need);
  const views = new Array(texts.length);
  let at = 0;
  for (let k = 0; k < texts.length; k++) {
    const { written } = encoder.encodeInto(texts[k], batchBuffer.subarray(at));
    views[k] = written === texts[k].length ? batchBuffer.subarray(at, at + written) : unicodePreimage(entries[k]);
    at += written;
  }
  return views;
}

/** The preimage of §2.2 as UTF-8 bytes; fields already checked for their types. */
export function preimage(e) {
  const n = String(e.seq), a = String(e.amount), b = String(e.balance_after);
  const prev = e.prev_entry_hash === null ? "" : e.prev_entry_hash;
  const { chain_id: c, id: i, type: t, currency: cur, metadata: m, journal_id: j, created_at: ts } = e;
  const text = `${VERSION_NETSTRING}${c.length}:${c},${n.length}:${n},${i.length}:${i},${t.length}:${t},` +
    `${a.length}:${a},${cur.length}:${cur},${b.length}:${b},${m.length}:${m},${j.length}:${j},` +
    `${ts.length}:${ts},${prev.length}:${prev},`;
  const bytes = encoder.encode(text);
  if (bytes.length === text.length) return bytes; // all ASCII: character counts are byte counts
  const fields = ["amply-ledger-entry/v1", c, n, i, t, a, cur, b, m, j, ts, prev];
  return encoder.encode(fields.map(netstring).join(""));
}

export async function entryHash(e) {
  return HASH_PREFIX + toHex(await sha256(preimage(e)));
}

// -- One chain (§3) ----------------------------------------------------------------------------

const STRING_FIELDS = ["chain_id", "id", "type", "currency", "metadata", "journal_id", "created_at", "entry_hash"];
const INT_FIELDS = ["seq", "amount", "balance_after"];

function typeProblem(e) {
  for (const name of ["chain_id", "seq", "id", "type", "amount", "currency", "balance_after",
    "metadata", "journal_id", "created_at", "entry_hash"]) {
    const v = get(e, name);
    if (INT_FIELDS.includes(name) ? !isInt(v) : typeof v !== "string") {
      return `field '${name}' is missing or not ${INT_FIELDS.includes(name) ? "an int" : "a str"}` +
        (v instanceof BadString ? " of Unicode text (a lone surrogate)" : "");
    }
  }
  return "field 'prev_entry_hash' is not a string or null";
}

class ChainVerifier {
  constructor(chainId, kind) {
    this.chainId = chainId;
    this.nonNegative = kind === "wallet";
    this.seq = 0;
    this.headHash = null;
    this.balances = new Map();
    this.brokenSeq = null;
    this.reason = null;
  }
  // Rules 1-6 of one entry (n = this.seq + 1); a problem, or null (and the state moves on).
  rules(e, n) {
    if (!isObject(e)) return "entry is not an object";
    for (const name of STRING_FIELDS) if (typeof get(e, name) !== "string") return typeProblem(e);
    for (const name of INT_FIELDS) if (!isInt(get(e, name))) return typeProblem(e);
    const prev = get(e, "prev_entry_hash");
    if (prev !== null && typeof prev !== "string") return typeProblem(e);
    const { seq, amount, balance_after: after, currency } = e;
    if (amount < -MAX_AMOUNT || amount > MAX_AMOUNT) return `amount ${amount} is beyond ±10^15`;
    if (after < INT64_MIN || after > INT64_MAX || seq < 1 || seq > INT64_MAX) {
      return "seq or balance_after is beyond a signed 64-bit integer";
    }
    if (e.chain_id !== this.chainId) return `entry belongs to chain ${JSON.stringify(e.chain_id)}`;
    if (seq !== n) return `sequence number is ${seq}, expected ${n} (gap or reorder)`;
    if (prev !== this.headHash) return "prev_entry_hash does not link to the previous entry's entry_hash";
    const balance = add(this.balances.get(currency) ?? 0, amount);
    if (after !== balance) return `balance_after is ${after}, expected ${balance} ${currency}`;
    if (this.nonNegative && balance < 0) return `wallet balance goes negative (${balance} ${currency})`;
    this.balances.set(currency, balance);
    this.headHash = e.entry_hash;
    this.seq = n;
    return null;
  }
  // Check entries[from..] in batches: rules 1-6 in order, then the batch's hashes at once.
  async addAll(entries, progress) {
    const total = entries.length;
    for (let start = 0; start < total; start += BATCH) {
      const end = Math.min(total, start + BATCH);
      const saved = { seq: this.seq, head: this.headHash, balances: new Map(this.balances) };
      let ruleBreak = null;
      let k = start;
      for (; k < end; k++) {
        const problem = this.rules(entries[k], k + 1);
        if (problem !== null) { ruleBreak = problem; break; }
      }
      const digests = await Promise.all(
        preimages(entries.slice(start, k)).map((bytes) => crypto.subtle.digest("SHA-256", bytes)),
      );
      const hashed = digests.map((digest) => HASH_PREFIX + toHex(digest));
      let bad = -1;
      for (let i = 0; i < hashed.length; i++) {
        if (hashed[i] !== entries[start + i].entry_hash) { bad = start + i; break; }
      }
      if (bad >= 0) {
        // Replay up to the entry whose hash fails, for the state before it.
        this.seq = saved.seq; this.headHash = saved.head; this.balances = saved.balances;
        for (let i = start; i < bad; i++) this.rules(entries[i], i + 1);
        this.brokenSeq = bad + 1;
        this.reason = "entry_hash does not match the entry's contents";
        return false;
      }
      if (ruleBreak !== null) {
        this.brokenSeq = k + 1;
        this.reason = ruleBreak;
        return false;
      }
      if (progress) progress(end, total);
    }
    return true;
  }
  result(head) {
    if (this.brokenSeq === null && head !== undefined) {
      const headSeq = get(head, "seq"), headHash = get(head, "entry_hash");
      if (!isInt(headSeq) || headSeq !== this.seq || headHash !== this.headHash) {
        this.brokenSeq = this.seq + 1;
        this.reason = `declared head (seq ${headSeq}) does not match the last entry (seq ${this.seq}): entries are missing or extra`;
      }
    }
    const balances = {};
    for (const [c, v] of [...this.balances].sort((x, y) => (x[0] < y[0] ? -1 : 1))) balances[c] = String(v);
    return {
      chain_id: this.chainId,
      ok: this.brokenSeq === null,
      entries_checked: this.seq,
      head_seq: this.seq,
      head_hash: this.headHash,
      balances,
      broken_seq: this.brokenSeq,
      reason: this.reason,
      checkpoint: null,
      extends: null,
    };
  }
}

function fail(result, reason, brokenSeq = null) {
  result.ok = false;
  result.reason = reason;
  result.broken_seq = brokenSeq;
  return result;
}

function checkFormat(doc) {
  if (!isObject(doc)) throw new Unreadable("an export must be a JSON object");
  if (get(doc, "format") !== EXPORT_FORMAT) {
    throw new Unreadable(`not an Amply ledger export (format must be '${EXPORT_FORMAT}')`);
  }
  const chain = get(doc, "chain");
  if (!isObject(chain) || !isStr(get(chain, "id"))) throw new Unreadable("export has no chain object with a string id");
  const chainId = chain.id, kind = get(chain, "kind");
  if (typeof chainId !== "string") throw new Unreadable("the chain id is not Unicode text");
  if (typeof kind !== "string" || !has(KIND_PREFIXES, kind)) throw new Unreadable(`unknown chain kind ${kind}`);
  if (!chainId.startsWith(KIND_PREFIXES[kind])) {
    throw new Unreadable(`chain ${chainId} cannot be of kind ${kind}: its id must start with '${KIND_PREFIXES[kind]}'`);
  }
  const names = Object.keys(doc);
  const at = names.indexOf("entries");
  if (at < 0 || !Array.isArray(doc.entries)) throw new Unreadable("export must have an entries array");
  if (names.indexOf("format") > at || names.indexOf("chain") > at) {
    throw new Unreadable("format and chain must come before entries (§4.1)");
  }
  const head = get(doc, "head");
  if (!isObject(head)) throw new Unreadable("export must have a head object");
  const seq = get(head, "seq"), headHash = get(head, "entry_hash");
  if (!isInt(seq) || seq < 0 || seq > INT64_MAX) throw new Unreadable("the head's seq must be an integer from 0");
  if (headHash !== null && typeof headHash !== "string") throw new Unreadable("the head's entry_hash must be a string or null");
  if (has(doc, "checkpoint")) {
    const cp = doc.checkpoint;
    if (!isObject(cp) || !isStr(get(cp, "note")) || !isStr(get(cp, "key"))) {
      throw new Unreadable("the export's checkpoint must be an object with a note and a key");
    }
  }
  return { chainId, kind };
}

/** Verify a parsed export (§3, §4, §6); Unreadable if it is not one. */
export async function verifyDocument(doc, { keys = [], progress = null } = {}) {
  const { chainId, kind } = checkFormat(doc);
  const verifier = new ChainVerifier(chainId, kind);
  await verifier.addAll(doc.entries, progress);
  const result = verifier.result(doc.head);
  if (result.ok) await checkEmbeddedCheckpoint(result, doc, keys);
  return result;
}

async function checkEmbeddedCheckpoint(result, doc, keys) {
  if (!has(doc, "checkpoint")) {
    if (result.head_seq > 0) {
      fail(result, "the export carries no signed checkpoint: nothing shows that Amply published these entries");
    }
    return;
  }
  if (result.head_seq === 0) {
    fail(result, "an empty export carries no checkpoint, and this one does");
    return;
  }
  try {
    const cp = parseCheckpoint(doc.checkpoint.note);
    if (cp.chainId !== result.chain_id) throw new CheckpointError(`the checkpoint is for another chain (${cp.origin})`);
    if (cp.size !== result.head_seq || cp.rootHash !== result.head_hash) {
      throw new CheckpointError(`the signed checkpoint (seq ${cp.size}, ${cp.rootHash}) does not match the export's head: its entries are not the ones that were signed`);
    }
    const trusted = keys.length ? keys : [await parseVerifierKey(doc.checkpoint.key)];
    const signer = await checkpointSigner(cp, trusted);
    result.checkpoint = { origin: cp.origin, size: Number(cp.size), time: cp.time, key: signer.text, pinned: keys.length > 0 };
  } catch (error) {
    if (!(error instanceof CheckpointError)) throw error;
    fail(result, error.message);
  }
}

// -- Signed notes and checkpoints (§6) ---------------------------------------------------------

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;
const KEY_SHAPE = /^[^+/\s]+\+[0-9a-f]{8}\+[A-Za-z0-9+/]+={0,2}$/;
const TIMESTAMP = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{6})Z$/;

function b64(text) {
  if (!B64.test(text) || text.length % 4) throw new CheckpointError("not standard padded base64");
  let bin;
  try {
    bin = atob(text);
  } catch {
    throw new CheckpointError("not base64");
  }
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

function b64encode(bytes) {
  return btoa(String.fromCharCode(...bytes));
}

const isSpace = (c) => /\s/u.test(c) || "\u001c\u001d\u001e\u001f\u0085".includes(c);
const validKeyName = (name) => name.length > 0 && !name.includes("+") && ![...name].some(isSpace);

export const looksLikeKey = (text) => KEY_SHAPE.test(text);

export async function keyId(name, publicKey) {
  const data = new Uint8Array([...encoder.encode(name), 0x0a, 0x01, ...publicKey]);
  return (await sha256(data)).slice(0, 4);
}

function pyStrip(text) {
  let start = 0, end = text.length;
  while (start < end && isSpace(text[start])) start++;
  while (end > start && isSpace(text[end - 1])) end--;
  return text.slice(start, end);
}

/** A verifier key `<name>+<hex key id>+<base64(0x01 || key)>` (§6.2). */
export async function parseVerifierKey(text, retiredAt = null) {
  if (typeof text !== "string") throw new CheckpointError("malformed verifier key: not text");
  const stripped = pyStrip(text);
  const plus = stripped.indexOf("+");
  const name = plus < 0 ? stripped : stripped.slice(0, plus);
  const rest = plus < 0 ? "" : stripped.slice(plus + 1);
  const plus2 = rest.indexOf("+");
  const hexId = plus2 < 0 ? rest : rest.slice(0, plus2);
  const encoded = plus2 < 0 ? "" : rest.slice(plus2 + 1);
  let raw;
  try {
    raw = b64(encoded);
  } catch (error) {
    throw new CheckpointError(`malformed verifier key: ${error.message}`);
  }
  if (!validKeyName(name) || raw.length !== 33 || raw[0] !== 1) {
    throw new CheckpointError("malformed verifier key: expected name+keyid+base64 Ed25519");
  }
  const publicKey = raw.slice(1);
  const id = await keyId(name, publicKey);
  if (toHex(id) !== hexId) throw new CheckpointError("verifier key id does not match its name and public key");
  return { name, publicKey, id: toHex(id), text: `${name}+${toHex(id)}+${b64encode(raw)}`, retiredAt };
}

function realMoment(y, mo, d, h, mi, s) {
  if (mo < 1 || mo > 12 || h > 23 || mi > 59 || s > 59 || y < 1) return false;
  const days = new Date(Date.UTC(2000, mo, 0)).getUTCDate(); // days of month mo in a leap year
  const leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
  return d >= 1 && d <= (mo === 2 && !leap ? 28 : days);
}

/** An RFC 3339 time with its offset, in microseconds since the epoch (as Python's
 * datetime.fromisoformat reads it); null if it is not one. */
export function instant(text) {
  const m = /^(\d{4})-(\d\d)-(\d\d)[T ](\d\d)(?::(\d\d)(?::(\d\d)(?:[.,](\d{1,6}))?)?)?(Z|[+-]\d\d(?::?\d\d)?)$/.exec(text);
  if (m === null) return null;
  const [y, mo, d, h] = [1, 2, 3, 4].map((i) => Number(m[i]));
  const mi = Number(m[5] ?? 0), s = Number(m[6] ?? 0);
  if (!realMoment(y, mo, d, h, mi, s)) return null;
  const micro = Number((m[7] ?? "").padEnd(6, "0"));
  let offset = 0;
  if (m[8] !== "Z") {
    const digits = m[8].slice(1).replace(":", "");
    const oh = Number(digits.slice(0, 2)), om = Number(digits.slice(2, 4) || 0);
    if (oh > 23 || om > 59) return null;
    offset = (m[8][0] === "-" ? -1 : 1) * (oh * 60 + om);
  }
  const base = Date.UTC(y, mo - 1, d, h, mi, s);
  const adjusted = new Date(base);
  adjusted.setUTCFullYear(y); // years below 100
  return (adjusted.getTime() - offset * 60000) * 1000 + micro;
}

/** Read a signed checkpoint note (§6.1, §6.2); signatures are checked by checkpointSigner. */
export function parseCheckpoint(note) {
  if (typeof note !== "string") throw new CheckpointError("a signed note is Unicode text (it holds a lone surrogate)");
  for (let i = 0; i < note.length; i++) {
    const c = note.charCodeAt(i);
    if (c < 0x20 && c !== 10) throw new CheckpointError("a signed note holds no control characters but newlines");
  }
  const cut = note.indexOf("\n\n");
  const body = cut < 0 ? note : note.slice(0, cut);
  const block = cut < 0 ? "" : note.slice(cut + 2);
  if (cut < 0 || !block.endsWith("\n")) throw new CheckpointError("a signed note is text, a blank line, then signature lines");
  const lines = body.split("\n");
  if (lines.length !== 4 || !lines.every((l) => l.length > 0)) {
    throw new CheckpointError("a checkpoint is four lines: origin, size, root hash and time, each non-empty");
  }
  const [origin, sizeText, rootText, timeLine] = lines;
  if (!/^[0-9]+$/.test(sizeText) || String(BigInt(sizeText)) !== sizeText) throw new CheckpointError("checkpoint size is not a decimal number");
  const size = norm(BigInt(sizeText));
  if (size > INT64_MAX) throw new CheckpointError("checkpoint size is out of range");
  let root;
  try {
    root = b64(rootText);
  } catch {
    throw new CheckpointError("checkpoint root hash is not base64");
  }
  if (root.length !== 32) throw new CheckpointError("checkpoint root hash is not 32 bytes");
  const time = timeLine.startsWith("time ") ? timeLine.slice(5) : timeLine;
  const m = TIMESTAMP.exec(time);
  if (!timeLine.startsWith("time ") || m === null) {
    throw new CheckpointError("the fourth line of a checkpoint is 'time YYYY-MM-DDTHH:MM:SS.ffffffZ'");
  }
  if (!realMoment(...[1, 2, 3, 4, 5, 6].map((i) => Number(m[i])))) {
    throw new CheckpointError(`checkpoint time '${time}' is not a real time`);
  }
  const signatures = block.slice(0, -1).split("\n").map((line) => {
    const rest = line.startsWith("\u2014 ") ? line.slice(2) : line;
    const space = rest.indexOf(" ");
    const name = space < 0 ? rest : rest.slice(0, space);
    const encoded = space < 0 ? "" : rest.slice(space + 1);
    let raw;
    try {
      raw = b64(encoded);
    } catch {
      throw new CheckpointError("a note signature is not base64");
    }
    if (!line.startsWith("\u2014 ") || !validKeyName(name) || raw.length < 5) {
      throw new CheckpointError(`malformed note signature line ${JSON.stringify(line)}`);
    }
    return { name, id: toHex(raw.slice(0, 4)), signature: raw.slice(4) };
  });
  return {
    origin,
    chainId: origin.slice(origin.lastIndexOf("/") + 1),
    size,
    rootHash: HASH_PREFIX + toHex(root),
    time,
    body: `${body}\n`,
    signatures,
  };
}

async function ed25519Verifies(publicKey, signature, message) {
  if (signature.length !== 64) return false;
  const key = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
  return crypto.subtle.verify({ name: "Ed25519" }, key, signature, message);
}

/** The first trusted key whose signature holds and vouches for the checkpoint's time. */
export async function checkpointSigner(cp, keys) {
  let vouching = null;
  for (const sig of cp.signatures) {
    for (const key of keys) {
      if (sig.name !== key.name || sig.id !== key.id) continue;
      if (!(await ed25519Verifies(key.publicKey, sig.signature, encoder.encode(cp.body)))) {
        throw new CheckpointError(`the signature by ${key.text} does not verify`);
      }
      if (key.retiredAt !== null) {
        const limit = instant(key.retiredAt), at = instant(cp.time);
        if (limit === null || at === null) throw new CheckpointError(`unreadable time ${cp.time} or ${key.retiredAt}`);
        if (!(at < limit)) {
          throw new CheckpointError(`the checkpoint (time ${cp.time}) is signed by ${key.text}, which retired at ${key.retiredAt}: it vouches only for earlier ones`);
        }
      }
      vouching = vouching ?? key;
    }
  }
  if (vouching === null) {
    const by = cp.signatures.map((s) => `${s.name}+${s.id}`).join(", ");
    throw new CheckpointError(`checkpoint is not signed by a trusted key (signed by ${by})`);
  }
  return vouching;
}

// -- Keys (§4.2, §6.3) -------------------------------------------------------------------------

/** The keys of a keys document (the JSON of GET /v1/public/keys) as their statuses say to
 * trust them; Unreadable for a malformed document. */
export async function keysFromDocument(doc) {
  const items = isObject(doc) ? get(doc, "data") : undefined;
  if (!Array.isArray(items)) throw new Unreadable("a keys document's data is an array of keys");
  const keys = [];
  for (const item of items) {
    if (!isObject(item) || !isStr(get(item, "key"))) throw new Unreadable("each item of a keys document has a key string");
    const status = has(item, "status") ? item.status : "active";
    if (!["active", "retired", "revoked"].includes(status)) throw new Unreadable(`unknown key status ${status}`);
    let key;
    try {
      key = await parseVerifierKey(item.key);
    } catch (error) {
      throw new Unreadable(error.message);
    }
    if (status === "revoked") continue;
    const retiredAt = get(item, "retired_at");
    if (status === "retired" && retiredAt !== null && retiredAt !== undefined) {
      if (typeof retiredAt !== "string" || instant(retiredAt) === null) {
        throw new Unreadable(`retired_at ${retiredAt} is not an RFC 3339 time`);
      }
      key = { ...key, retiredAt };
    }
    keys.push(key);
  }
  return keys;
}

/** `--key` values: a value shaped like a key is one; anything else names a file, given as its
 * bytes in `files` (absent: it cannot be read). Unreadable (exit 2) on any fault. */
export async function keysFromArgs(values, files) {
  const keys = [];
  for (const value of values) {
    if (looksLikeKey(value)) {
      try {
        keys.push(await parseVerifierKey(value));
      } catch (error) {
        throw new Unreadable(error.message);
      }
      continue;
    }
    const data = files[value];
    if (!data) throw new Unreadable(`--key ${value} is neither a verifier key nor a readable file`);
    let start = 0;
    while (start < data.length && [32, 9, 13, 10].includes(data[start])) start++;
    let listed;
    if (data[start] === 0x7b) {
      listed = await keysFromDocument(loadsStrict(data, `the keys file ${value}`));
    } else {
      let text;
      try {
        text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(data);
      } catch {
        throw new Unreadable(`the keys file ${value} is not UTF-8`);
      }
      listed = [];
      for (const line of text.split(/\r\n|[\n\r\u000b\u000c\u001c\u001d\u001e\u0085\u2028\u2029]/)) {
        if (pyStrip(line) === "") continue;
        try {
          listed.push(await parseVerifierKey(line));
        } catch (error) {
          throw new Unreadable(error.message);
        }
      }
    }
    if (!listed.length) throw new Unreadable(`${value} holds no verifier key that vouches for anything`);
    keys.push(...listed);
  }
  return keys;
}

// -- Two downloads (§4.4) ----------------------------------------------------------------------

export async function verifyExtension(oldDoc, newDocThunk, { keys = [], progress = null } = {}) {
  const earlier = await verifyDocument(oldDoc, { keys });
  if (!earlier.ok) {
    return fail(earlier, `the earlier export does not verify (OLD, at seq ${earlier.broken_seq}): ${earlier.reason}`, earlier.broken_seq);
  }
  const newDoc = await newDocThunk();
  const later = await verifyDocument(newDoc, { keys, progress });
  if (!later.ok) return later;
  if (later.chain_id !== earlier.chain_id) return fail(later, `the exports are of different chains (${earlier.chain_id})`);
  if (later.head_seq < earlier.head_seq) {
    return fail(later, `the later export has fewer entries (${later.head_seq}) than the earlier one (${earlier.head_seq}): history was truncated`, later.head_seq + 1);
  }
  const olds = oldDoc.entries, news = newDoc.entries;
  if (earlier.head_seq && news[earlier.head_seq - 1].entry_hash !== earlier.head_hash) {
    let differs = 1;
    while (olds[differs - 1].entry_hash === news[differs - 1].entry_hash) differs++;
    const proof = earlier.checkpoint && later.checkpoint ? " Both exports carry valid signed checkpoints: together they prove it." : "";
    return fail(later, `history was rewritten: entry ${differs} differs from the earlier export.${proof}`, differs);
  }
  later.extends = { seq: earlier.head_seq, entry_hash: earlier.head_hash };
  return later;
}

// -- Donor receipts (§7) -----------------------------------------------------------------------

export async function receiptCommitment(donationId, salt, secret) {
  const text = [COMMITMENT_VERSION, donationId, salt, secret].map(netstring).join("");
  return HASH_PREFIX + toHex(await sha256(encoder.encode(text)));
}

const RECEIPT_SHAPE = {
  donation: { id: ["str"], organisation_id: ["str"], fund_id: ["str", "null"], amount: ["int"], currency: ["str"], status: ["str"], completed_at: ["str", "null"] },
  entry: { chain_id: ["str"], seq: ["int"], id: ["str"], entry_hash: ["str"] },
  commitment: { scheme: ["str"], salt: ["str", "null"], secret: ["str"], value: ["str", "null"] },
  checkpoint: { note: ["str"], key: ["str"] },
};
const kindOf = (v) => (v === null ? "null" : isInt(v) ? "int" : isStr(v) ? "str" : "other");
const HEX64 = /^[0-9a-f]{64}$/;

export function checkReceiptShape(receipt) {
  if (!isObject(receipt) || get(receipt, "format") !== RECEIPT_FORMAT) {
    throw new Unreadable(`not an Amply receipt (format must be '${RECEIPT_FORMAT}')`);
  }
  for (const [part, members] of Object.entries(RECEIPT_SHAPE)) {
    const value = get(receipt, part);
    if (!isObject(value)) throw new Unreadable(`the receipt has no '${part}' object`);
    for (const [name, kinds] of Object.entries(members)) {
      if (!has(value, name) || !kinds.includes(kindOf(value[name]))) {
        throw new Unreadable(`the receipt's ${part}.${name} must be ${kinds.join(" or ")}`);
      }
      if (value[name] instanceof BadString && part !== "checkpoint") {
        throw new Unreadable(`the receipt's ${part}.${name} is not Unicode text`);
      }
    }
  }
  const opening = receipt.commitment;
  if (opening.scheme !== COMMITMENT_VERSION) throw new Unreadable("unknown commitment scheme");
  if ((opening.salt === null) !== (opening.value === null)) throw new Unreadable("the receipt's salt and value are both null or both strings");
  if (!HEX64.test(opening.secret) || (opening.salt !== null && !HEX64.test(opening.salt))) {
    throw new Unreadable("the receipt's salt and secret are 64 lowercase hex digits");
  }
  if (receipt.entry.seq < 1 || receipt.donation.amount < -MAX_AMOUNT || receipt.donation.amount > MAX_AMOUNT) {
    throw new Unreadable("the receipt's seq or amount is out of range");
  }
}

async function entryProblem(pub, donation, entry, opening) {
  if (pub.id !== entry.id || pub.entry_hash !== entry.entry_hash) return `entry ${pub.seq} of the export is not the receipt's entry`;
  let metadata = null;
  try {
    metadata = parseText(pub.metadata, "the entry's metadata");
  } catch (error) {
    if (!(error instanceof Unreadable)) throw error;
  }
  if (!isObject(metadata)) return `entry ${pub.seq} has metadata that is not a JSON object`;
  if (pub.type !== "donation_received" || get(metadata, "donation_id") !== donation.id) return `entry ${pub.seq} does not record this donation`;
  if (pub.amount !== donation.amount || pub.currency !== donation.currency) return "the entry's amount or currency is not the receipt's";
  const committed = get(metadata, "receipt_commitment") ?? null;
  if (opening.salt === null) {
    if (committed !== null) return "the receipt has no salt, but the entry carries a commitment: only a receipt that opens it proves this donation";
    return null;
  }
  const commitment = await receiptCommitment(donation.id, opening.salt, opening.secret);
  if (committed !== commitment) return "the receipt does not open the entry's commitment: it is not this donor's receipt";
  if (opening.value !== commitment) return "the receipt's commitment value is not the commitment of its salt and secret";
  return null;
}

/** Check a donor's receipt against an export (§7). exportThunk gives the parsed export. */
export async function verifyReceipt(receipt, exportThunk, { keys = [], progress = null } = {}) {
  checkReceiptShape(receipt);
  const { donation, entry, commitment: opening } = receipt;
  const seq = Number(entry.seq);
  const result = { ok: true, donation_id: donation.id, chain_id: entry.chain_id, seq, broken_seq: null, reason: null, checkpoint: null };
  const fails = (reason, at) => Object.assign(result, { ok: false, reason, broken_seq: at });
  let cp;
  try {
    cp = parseCheckpoint(receipt.checkpoint.note);
  } catch (error) {
    if (!(error instanceof CheckpointError)) throw error;
    cp = error;
  }
  const doc = await exportThunk();
  const exported = await verifyDocument(doc, { keys, progress });
  result.export = exported;
  if (!exported.ok) {
    return fails(`the export does not verify: BROKEN at seq ${exported.broken_seq}: ${exported.reason}`, exported.broken_seq);
  }
  if (exported.chain_id !== entry.chain_id || donation.organisation_id !== exported.chain_id) {
    return fails(`the receipt is not for this export's chain (${exported.chain_id})`, seq);
  }
  if (entry.seq > exported.head_seq) return fails(`the export has no entry ${seq}`, seq);
  const pub = doc.entries[seq - 1];
  result.entry = pub;
  const problem = await entryProblem(pub, donation, entry, opening);
  if (problem !== null) return fails(problem, seq);
  try {
    if (cp instanceof CheckpointError) throw cp;
    if (cp.chainId !== exported.chain_id) throw new CheckpointError(`it is for another chain (${cp.origin})`);
    if (cp.size < entry.seq) throw new CheckpointError(`it covers ${cp.size} entries, not entry ${seq}`);
    if (cp.size > exported.head_seq) throw new CheckpointError("it is newer than the export: download a newer export");
    if (doc.entries[Number(cp.size) - 1].entry_hash !== cp.rootHash) {
      throw new CheckpointError(`the export's entry ${cp.size} is not the one Amply signed: the history was rewritten`);
    }
    const signer = await checkpointSigner(cp, keys.length ? keys : [await parseVerifierKey(receipt.checkpoint.key)]);
    result.checkpoint = { size: Number(cp.size), time: cp.time, key: signer.text, pinned: keys.length > 0 };
  } catch (error) {
    if (!(error instanceof CheckpointError)) throw error;
    return fails(`the receipt's checkpoint: ${error.message}`, null);
  }
  return result;
}

// -- The commands, as `amply verify` / `amply verify-receipt` run them -------------------------

/** Run `verify FILE [FILE] [--key K]…` or `verify-receipt RECEIPT EXPORT [--key K]…` over
 * files given as bytes (a missing one: undefined). Returns {exit, result|error}: exit 0 it
 * holds, 1 broken, 2 unreadable, as §4.2 and §7. */
export async function runCommand(command, args, files, { progress = null } = {}) {
  const positional = [], keyValues = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--key") keyValues.push(args[++i]);
    else positional.push(args[i]);
  }
  const read = (name) => {
    const data = files[name];
    if (!data) throw new Unreadable(`cannot read ${name}`);
    return loadsStrict(data, name);
  };
  try {
    const keys = await keysFromArgs(keyValues, files);
    let result;
    if (command === "verify") {
      if (positional.length < 1 || positional.length > 2) throw new Unreadable("give one export, or two: OLD NEW");
      if (positional.length === 1) result = await verifyDocument(read(positional[0]), { keys, progress });
      else result = await verifyExtension(read(positional[0]), async () => read(positional[1]), { keys, progress });
    } else if (command === "verify-receipt") {
      const receipt = read(positional[0]);
      if (!isObject(receipt)) throw new Unreadable(`${positional[0]} must hold a JSON object`);
      result = await verifyReceipt(receipt, async () => read(positional[1]), { keys, progress });
      delete result.export;
      delete result.entry;
    } else {
      throw new Unreadable(`unknown command ${command}`);
    }
    return { exit: result.ok ? 0 : 1, result };
  } catch (error) {
    if (error instanceof Unreadable || error instanceof CheckpointError) {
      return { exit: 2, error: error.message };
    }
    throw error;
  }
}
