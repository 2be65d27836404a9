// The ragbus web app: chat (streamed answers, numbered citations, tier and cost, feedback), documents
// (upload in any format the stack reads, list, delete) and audit (requests with filters, one request's
// story and its trace as a waterfall of spans). Plain JS over the
// gateway's own API, no build step and nothing fetched from elsewhere. Every text from the server goes
// into the page as text (textContent), never as HTML.
"use strict";

const KEY = "ragbus.key";
const $ = (id) => document.getElementById(id);
const short = (version) => (version ? String(version).slice(0, 12) : ""); // content hashes, shown short

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c);
  return el;
}

function toast(text) {
  const t = $("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), 4000);
}

// --- the API key, kept in this browser -------------------------------------------------------------

const apiKey = () => localStorage.getItem(KEY) || "";

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${apiKey()}`, ...(options.headers || {}) };
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options = { ...options, body: JSON.stringify(options.json) };
  }
  const response = await fetch(path, { ...options, headers });
  if (options.raw) return response;
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

async function checkKey() {
  const status = $("key-status");
  if (!apiKey()) {
    status.textContent = "no key: enter one to start";
    return false;
  }
  try {
    await api("/v1/models");
    status.textContent = "key ok";
    return true;
  } catch (e) {
    status.textContent = `key refused: ${e.message}`;
    return false;
  }
}

$("key-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const value = $("key-input").value.trim();
  if (value) localStorage.setItem(KEY, value);
  $("key-input").value = "";
  if (await checkKey()) route();
});
$("key-forget").addEventListener("click", () => {
  localStorage.removeItem(KEY);
  checkKey();
});

// --- chat ------------------------------------------------------------------------------------------

let conversation = sessionStorage.getItem("ragbus.conversation") || newConversation();
function newConversation() {
  const id = `web-${crypto.randomUUID ? crypto.randomUUID() : Date.now().toString(36)}`;
  sessionStorage.setItem("ragbus.conversation", id);
  return id;
}

function showPassage(c) {
  $("passage-title").textContent = `[${c.n}] ${c.title || c.doc_id}`;
  const place = [`document ${c.doc_id}`];
  if (c.page != null) place.push(c.last_page && c.last_page !== c.page ? `pp. ${c.page}-${c.last_page}` : `p. ${c.page}`);
  if (c.section && c.section.length) place.push(`§ ${c.section.join(" > ")}`);
  if (c.score != null) place.push(`score ${Number(c.score).toFixed(3)}`);
  $("passage-place").textContent = place.join(" · ");
  $("passage-text").textContent = c.quote || "(no passage recorded for this source)";
  $("passage").showModal();
}

// The answer's text with each [n] a button that opens source n.
function renderAnswer(el, text, citations) {
  el.replaceChildren();
  const byN = new Map(citations.map((c) => [c.n, c]));
  let last = 0;
  for (const m of text.matchAll(/\[(\d+)\]/g)) {
    const c = byN.get(Number(m[1]));
    if (!c) continue;
    el.append(text.slice(last, m.index));
    el.append(h("button", { class: "cite", type: "button", "data-n": c.n, onclick: () => showPassage(c) }, `[${c.n}]`));
    last = m.index + m[0].length;
  }
  el.append(text.slice(last));
}

function rateButtons(queryId) {
  const box = h("span", { class: "rate" });
  for (const [rating, label] of [["up", "▲ helpful"], ["down", "▼ not helpful"]]) {
    box.append(h("button", {
      type: "button", class: `rate-${rating}`, title: `rate ${rating}`,
      onclick: async (ev) => {
        try {
          await api("/v1/feedback", { method: "POST", json: { query_id: queryId, rating } });
          box.querySelectorAll("button").forEach((b) => b.classList.remove("chosen"));
          ev.target.classList.add("chosen");
          box.dataset.rated = rating;
          toast("Thanks: feedback recorded");
        } catch (e) {
          toast(`feedback not recorded: ${e.message}`);
        }
      },
    }, label));
  }
  return box;
}

function money(x) {
  if (x == null) return "–";
  return x === 0 ? "$0 (no model call)" : `$${Number(x).toFixed(x < 0.01 ? 6 : 4)}`;
}

// Server-Sent Events from a fetch body: yields each `data:` payload (JSON, or "[DONE]").
async function* sse(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = frame.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
      if (data) yield data === "[DONE]" ? data : JSON.parse(data);
    }
  }
}

async function ask(question) {
  const answer = h("div", { class: "a streaming" });
  const meta = h("div", { class: "meta muted" }, "waiting for the answer…");
  const turn = h("div", { class: "turn" }, h("div", { class: "q" }, question), answer, meta);
  $("chat-log").append(turn);
  turn.scrollIntoView({ block: "end" });
  const body = {
    model: "ragbus", stream: true, conversation_id: conversation,
    messages: [{ role: "user", content: question }],
  };
  let response;
  try {
    response = await api("/v1/chat/completions", { method: "POST", json: body, raw: true });
  } catch (e) {
    return failed(turn, answer, meta, e.message);
  }
  if (!response.ok) {
    const err = await response.json().catch(() => null);
    return failed(turn, answer, meta, new ApiError(response.status, err).message, err);
  }
  let text = "";
  try {
    for await (const chunk of sse(response)) {
      if (chunk === "[DONE]") break;
      if (chunk.error) return failed(turn, answer, meta, chunk.error.message, chunk);
      const choice = (chunk.choices || [])[0];
      if (chunk.ragbus && chunk.ragbus.reset) text = ""; // the cascade withdrew a draft
      if (choice && choice.delta && choice.delta.content) {
        text += choice.delta.content;
        answer.dataset.pieces = String(Number(answer.dataset.pieces || 0) + 1); // pieces as streamed
      }
      answer.textContent = text;
      if (choice && choice.finish_reason === "stop") {
        const info = chunk.ragbus || {};
        const citations = choice.delta.citations || [];
        finished(turn, answer, meta, info, citations);
      }
    }
  } catch (e) {
    return failed(turn, answer, meta, `the stream broke: ${e.message}`);
  }
}

function failed(turn, answer, meta, message, body) {
  turn.classList.add("error");
  answer.classList.remove("streaming");
  answer.textContent = message;
  const queryId = body && body.error && body.error.query_id;
  meta.replaceChildren(queryId ? auditLink(queryId) : "");
}

function auditLink(queryId) {
  return h("a", { href: `#/audit/${encodeURIComponent(queryId)}`, class: "story-link" }, `request ${queryId}`);
}

function finished(turn, answer, meta, info, citations) {
  answer.classList.remove("streaming");
  turn.classList.add("done");
  turn.dataset.queryId = info.query_id || "";
  renderAnswer(answer, info.answer != null ? info.answer : answer.textContent, citations);
  if (citations.length) {
    const list = h("ol", { class: "sources" });
    for (const c of citations) {
      const name = c.title && c.title !== c.doc_id ? `${c.title} (${c.doc_id})` : c.doc_id;
      const place = c.page != null ? `, p. ${c.page}` : "";
      list.append(h("li", { value: c.n }, h("button", { type: "button", class: "source", onclick: () => showPassage(c) }, name + place)));
    }
    answer.after(list);
  }
  const tier = info.tier != null ? `tier ${info.tier}` : "tier –";
  meta.replaceChildren(
    h("span", { class: "tier", title: info.tier_reason || "" }, tier + (info.cached ? " (cached)" : "")),
    h("span", { class: "cost" }, money(info.cost_usd)),
    info.query_id ? rateButtons(info.query_id) : "",
    info.query_id ? auditLink(info.query_id) : "",
  );
}

$("chat-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const q = $("chat-input").value.trim();
  if (!q) return;
  $("chat-input").value = "";
  $("chat-send").disabled = true;
  try { await ask(q); } finally { $("chat-send").disabled = false; }
});
$("chat-input").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); $("chat-form").requestSubmit(); }
});
$("chat-new").addEventListener("click", () => {
  conversation = newConversation();
  $("chat-log").replaceChildren();
});

// --- documents -------------------------------------------------------------------------------------

// A document id from a file name (ids hold no spaces, colons or control characters).
const docIdOf = (name) => name.replace(/[\s:\x00-\x1f]+/g, "_").slice(0, 256) || "document";

// What a file becomes: a JSON file of documents (`{"doc_id", "text", ...}`, or a list of them) is sent
// as those documents (JSON); any other file is uploaded as it is (multipart), in whatever format the
// ingest service reads (PDF, DOCX, HTML, Markdown, text, CSV, JSON records), for it to read.
async function uploadsOf(file, title) {
  const ext = (file.name.split(".").pop() || "").toLowerCase();
  if (ext === "json") {
    let parsed;
    try { parsed = JSON.parse(await file.text()); } catch { parsed = null; }
    const items = Array.isArray(parsed) ? parsed : parsed && typeof parsed.text === "string" ? [parsed] : null;
    if (items && items.every((d) => d && typeof d.text === "string")) {
      return items.map((d, i) => {
        const id = d.doc_id || docIdOf(items.length > 1 ? `${file.name}#${i + 1}` : file.name);
        return { id, json: { ...d, doc_id: id } };
      });
    }
  }
  return [{ id: docIdOf(file.name), file, title }];
}

// POST /v1/documents as multipart/form-data, reporting the bytes sent (fetch cannot tell them).
function uploadFile(item, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append("file", item.file, item.file.name);
    form.append("doc_id", item.id);
    if (item.title) form.append("title", item.title);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/documents");
    xhr.setRequestHeader("Authorization", `Bearer ${apiKey()}`);
    xhr.upload.addEventListener("progress", (ev) => { if (ev.lengthComputable) onProgress(ev.loaded / ev.total); });
    xhr.addEventListener("load", () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { body = null; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body); else reject(new ApiError(xhr.status, body));
    });
    xhr.addEventListener("error", () => reject(new Error("the upload did not reach the gateway")));
    xhr.send(form);
  });
}

async function upload(item) {
  const line = h("li", { "data-doc": item.id }, `${item.id}: sending…`);
  $("upload-progress").append(line);
  try {
    let state = item.json
      ? await api("/v1/documents", { method: "POST", json: item.json })
      : await uploadFile(item, (share) => (line.textContent = `${item.id}: uploading ${Math.round(100 * share)}%`));
    const started = Date.now();
    while (state.status === "submitted" && Date.now() - started < 300000) {
      line.textContent = `${item.id}: ${state.status}, indexing… (${Math.round((Date.now() - started) / 1000)} s)`;
      await new Promise((r) => setTimeout(r, 700));
      state = await api(`/v1/documents/${encodeURIComponent(item.id)}`);
    }
    const extra = state.status === "indexed" ? `, ${state.chunks} chunks, version ${short(state.version)}` : state.reason ? `: ${state.reason}` : "";
    line.textContent = `${item.id}: ${state.status}${extra}`;
    line.className = `status-${state.status}`;
  } catch (e) {
    line.textContent = `${item.id}: failed: ${e.message}`;
    line.className = "status-failed";
  }
  loadDocuments();
}

$("upload-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const files = [...$("upload-file").files];
  const title = $("upload-title").value.trim();
  if (!files.length) return toast("choose a file first");
  for (const file of files) for (const item of await uploadsOf(file, title)) upload(item);
  $("upload-form").reset();
});

async function loadDocuments() {
  const body = $("doc-table").querySelector("tbody");
  let docs;
  try { docs = (await api("/v1/documents")).data; } catch (e) { return body.replaceChildren(h("tr", {}, h("td", { colspan: 7 }, e.message))); }
  body.replaceChildren(...docs.map((d) => h("tr", { "data-doc": d.id },
    h("td", {}, d.id), h("td", {}, d.title || ""), h("td", { class: `status-${d.status}` }, d.status + (d.reason ? `: ${d.reason}` : "")),
    h("td", { title: d.version || "" }, short(d.version)), h("td", {}, d.chunks != null ? String(d.chunks) : ""),
    h("td", {}, d.submitted_at ? new Date(d.submitted_at).toLocaleString() : ""),
    h("td", {}, h("button", { type: "button", class: "delete", onclick: () => removeDocument(d.id) }, "Delete")),
  )));
  if (!docs.length) body.replaceChildren(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No documents uploaded through the gateway yet.")));
}

async function removeDocument(id) {
  if (!confirm(`Delete ${id} from the index (every version)?`)) return;
  try {
    await api(`/v1/documents/${encodeURIComponent(id)}`, { method: "DELETE" });
    toast(`${id} deleted`);
  } catch (e) {
    toast(`not deleted: ${e.message}`);
  }
  loadDocuments();
}

// --- audit -----------------------------------------------------------------------------------------

const isoOf = (local) => (local ? new Date(local).toISOString() : "");

async function loadRequests() {
  const params = new URLSearchParams();
  for (const [name, id] of [["status", "f-status"], ["tier", "f-tier"]]) if ($(id).value) params.set(name, $(id).value);
  if ($("f-since").value) params.set("since", isoOf($("f-since").value));
  if ($("f-until").value) params.set("until", isoOf($("f-until").value));
  const body = $("audit-table").querySelector("tbody");
  let rows;
  try { rows = (await api(`/v1/requests?${params}`)).data; } catch (e) { return body.replaceChildren(h("tr", {}, h("td", { colspan: 7 }, e.message))); }
  body.replaceChildren(...rows.map((r) => h("tr", { "data-query": r.query_id, onclick: () => (location.hash = `#/audit/${encodeURIComponent(r.query_id)}`) },
    h("td", {}, new Date(r.submitted_at).toLocaleString()), h("td", {}, r.question || ""),
    h("td", { class: `status-${r.status}` }, r.status), h("td", {}, r.tier != null ? String(r.tier) : ""),
    h("td", {}, money(r.cost_usd)), h("td", {}, r.latency_ms != null ? `${Math.round(r.latency_ms)} ms` : ""),
    h("td", {}, r.rating || ""),
  )));
  if (!rows.length) body.replaceChildren(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No requests match.")));
}

function verdicts(list) {
  return (list || []).map((v) => `${v.check}: ${v.passed ? "passed" : "failed"}${v.score != null ? ` (${Number(v.score).toFixed(2)})` : ""}${v.reason ? ` – ${v.reason}` : ""}`).join("\n") || "–";
}

// Each service's stage on one time line from the submission (the monitor's record): shown when the
// request's trace has no spans to draw.
function waterfall(story) {
  const stages = story.stages || [];
  if (!stages.length) return h("p", { class: "muted" }, "No stage timings recorded.");
  const t0 = Date.parse(story.submitted_at);
  const end = Math.max(...stages.map((s) => Date.parse(s.finished_at)), story.completed_at ? Date.parse(story.completed_at) : 0);
  const span = Math.max(end - t0, 1);
  return h("div", { class: "waterfall stages" }, stages.map((s) => {
    const a = Date.parse(s.started_at) - t0, b = Date.parse(s.finished_at) - t0;
    const bar = h("div", { class: "wf-bar" });
    bar.style.left = `${(100 * a) / span}%`;
    bar.style.width = `${(100 * (b - a)) / span}%`;
    return h("div", { class: "wf-row" }, h("span", {}, `${s.stage} (${s.service})`), h("div", { class: "wf-track" }, bar), h("span", {}, `${(b - a).toFixed(1)} ms`));
  }));
}

// The spans in tree order: each after its parent, siblings by start; spans whose parent is not in
// the trace (not exported yet, or elsewhere) start trees of their own.
function spanTree(spans) {
  const ids = new Set(spans.map((s) => s.span_id));
  const children = new Map();
  for (const s of spans) {
    const parent = s.parent_id && ids.has(s.parent_id) ? s.parent_id : null;
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent).push(s);
  }
  const out = [];
  const walk = (parent, depth) => {
    for (const s of (children.get(parent) || []).sort((a, b) => a.offset_ms - b.offset_ms)) {
      out.push([s, depth]);
      if (depth < 30) walk(s.span_id, depth + 1);
    }
  };
  walk(null, 0);
  return out;
}

// The request's trace as a waterfall of its spans (GET /v1/requests/{id}/trace), with each span's
// attributes on hover and the link to Jaeger when the gateway reads from one.
function traceWaterfall(trace, story) {
  const parts = [];
  if (trace.jaeger_url) parts.push(h("p", {}, h("a", { href: trace.jaeger_url, target: "_blank", rel: "noopener noreferrer", id: "jaeger-link" }, "Open in Jaeger")));
  if (!trace.spans.length) {
    const why = trace.trace_id ? `No spans of trace ${trace.trace_id} recorded (yet).` : "No trace recorded for this request.";
    parts.push(h("p", { class: "muted" }, `${why} Each service's stage, from the monitor's record:`), waterfall(story));
    return parts;
  }
  const total = Math.max(trace.duration_ms, 0.001);
  parts.push(h("div", { class: "waterfall trace" }, spanTree(trace.spans).map(([s, depth]) => {
    const bar = h("div", { class: `wf-bar${s.status === "ERROR" ? " wf-error" : ""}` });
    bar.style.left = `${(100 * s.offset_ms) / total}%`;
    bar.style.width = `${(100 * s.duration_ms) / total}%`;
    const name = h("span", { class: "wf-name" }, s.name, h("span", { class: "muted" }, ` ${s.service || ""}`));
    name.style.paddingLeft = `${depth * 0.8}rem`;
    const details = [`${s.kind} · ${s.status} · starts at ${s.offset_ms.toFixed(1)} ms`,
      ...Object.entries(s.attributes).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(", ") : v}`)].join("\n");
    return h("div", { class: "wf-row span-row", "data-span": s.span_id, title: details },
      name, h("div", { class: "wf-track" }, bar), h("span", {}, `${s.duration_ms.toFixed(1)} ms`));
  })));
  parts.push(h("p", { class: "muted" }, `${trace.spans.length} spans, ${trace.duration_ms.toFixed(1)} ms from the first to the last; hover a span for its attributes.`));
  return parts;
}

// Spans reach the span file (or Jaeger) in batches, every half second: a request just answered may
// have none yet, so an empty trace is asked for again a few times.
function traceSection(id, story) {
  const box = h("div", { id: "trace" }, h("p", { class: "muted" }, "loading the trace…"));
  const load = async (tries) => {
    try {
      const trace = await api(`/v1/requests/${encodeURIComponent(id)}/trace`);
      if (!trace.spans.length && trace.trace_id && tries > 0 && box.isConnected !== false) {
        setTimeout(() => load(tries - 1), 1000);
      }
      box.replaceChildren(...traceWaterfall(trace, story));
      box.dataset.spans = String(trace.spans.length);
    } catch (e) {
      box.replaceChildren(h("p", { class: "muted" }, `The trace cannot be shown: ${e.message}`), waterfall(story));
    }
  };
  load(5);
  return box;
}

async function showStory(id) {
  const box = $("story");
  box.replaceChildren(h("p", { class: "muted" }, "loading…"));
  let s;
  try { s = await api(`/v1/requests/${encodeURIComponent(id)}`); } catch (e) { return box.replaceChildren(h("p", { class: "status-failed" }, e.status === 404 ? `No request ${id} on record for this key's tenant.` : e.message)); }
  const row = (k, v) => [h("dt", {}, k), h("dd", {}, v == null || v === "" ? "–" : v)];
  const attempts = h("table", { class: "attempts" }, h("tr", {}, ["tier", "model", "prompt", "tokens in/out", "cost", "accepted"].map((x) => h("th", {}, x))),
    (s.attempts || []).map((a) => h("tr", {}, h("td", {}, String(a.tier)), h("td", {}, a.name || ""), h("td", {}, a.prompt || ""),
      h("td", {}, `${a.prompt_tokens || 0}/${a.completion_tokens || 0}`), h("td", {}, money(a.cost_usd)), h("td", {}, a.accepted ? "yes" : "no"))));
  const sources = h("ol", { class: "story-sources" }, (s.sources || []).map((x) =>
    h("li", {}, `${x.title || x.doc_id} (${x.doc_id}) version ${short(x.version) || "?"}, score ${x.score != null ? Number(x.score).toFixed(3) : "–"}${x.cited ? `, cited as [${x.cited}]` : ""}`)));
  box.replaceChildren(
    h("h3", {}, `Request ${s.query_id}`),
    h("dl", {},
      row("submitted", new Date(s.submitted_at).toLocaleString()), row("question", s.question),
      row("as passed on", s.question_redacted), row("input guard", verdicts(s.input_verdicts)),
      row("status", s.status + (s.status_reason ? `: ${s.status_reason}` : "")), row("answer", s.answer),
      row("output guard", verdicts(s.verdicts)), row("tier", s.tier != null ? `${s.tier}${s.escalation_reason ? ` (${s.escalation_reason})` : ""}` : null),
      row("model", s.model), row("prompt", s.prompt_version), row("cost", money(s.cost_usd)),
      row("tokens", `${s.prompt_tokens} in, ${s.completion_tokens} out`), row("latency", s.latency_ms != null ? `${Math.round(s.latency_ms)} ms` : null),
      row("cached from", s.cached_from), row("rating", s.rating ? s.rating + (s.feedback_comment ? `: ${s.feedback_comment}` : "") : null),
      row("trace", s.trace_id ? `${s.trace_id} (ragbus trace ${s.trace_id.slice(0, 12)})` : null),
    ),
    h("h4", {}, "Tiers tried"), attempts,
    h("h4", {}, "Trace"), traceSection(id, s),
    h("h4", {}, "Sources read"), (s.sources || []).length ? sources : h("p", { class: "muted" }, "none"),
  );
}

$("audit-filters").addEventListener("submit", (ev) => {
  ev.preventDefault();
  loadRequests();
});

// --- pages -----------------------------------------------------------------------------------------

function route() {
  const [, page = "chat", id] = location.hash.match(/^#\/(\w+)(?:\/(.+))?/) || [];
  for (const name of ["chat", "documents", "audit"]) {
    $(`page-${name}`).hidden = name !== page;
    $(`nav-${name}`).classList.toggle("active", name === page);
  }
  if (!apiKey()) return;
  if (page === "documents") loadDocuments();
  if (page === "audit") {
    loadRequests();
    if (id) showStory(decodeURIComponent(id)); else $("story").replaceChildren();
  }
  if (page === "chat") $("chat-input").focus();
}

window.addEventListener("hashchange", route);
checkKey();
route();
