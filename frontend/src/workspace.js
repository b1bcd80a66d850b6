// The labelling workspace: one frame at a time, every box answered, keyboard first.
//
// A box is untouched, confirmed (its suggestion), corrected (another product), added (drawn here)
// or deleted. Untouched boxes are never taken as confirmed by themselves: submit refuses and lists
// them until each is answered or "confirm remaining" (Shift+Enter) confirms their suggestions.
// Every change goes through remember(), so undo covers every kind of action.

import { ApiError, NetworkError, request } from "./api.js";
import { el, svg, thumbnail } from "./dom.js";
import { ProductSearch } from "./search.js";
import { Viewport } from "./viewport.js";
import { resolveKey } from "./workspace_keys.js";

const MAX_TIME_MS = 3_600_000;       // the API's bound on time_spent_ms
const LEASE_RENEW_MS = 4 * 60_000;   // renew the frame's lease this often ...
const IDLE_MS = 10 * 60_000;         // ... while the annotator was active this recently
const BANDS = { high: 0.8, mid: 0.5 }; // suggestion score bands (the help overlay lists them)
const MAX_CANDIDATES = 9;            // one digit key each
const STATES = ["confirmed", "corrected", "added", "deleted"];

const root = document.getElementById("workspace");
const refs = Object.fromEntries([...root.querySelectorAll("[data-ref]")].map((node) => [node.dataset.ref, node]));
const config = root.dataset;

const state = {
  frame: null,
  shownPredictions: [],  // the ids of the predictions loaded with the frame: sent back with the submit
  products: new Map(),   // id -> product, from the frame and the searches
  boxes: [],             // in reading order (box.n)
  selected: null,        // a box key
  editable: false,
  busy: false,
  loading: false,
  drawing: false,
  draft: null,           // the rectangle being drawn, image pixels
  undo: [],
  redo: [],
  timing: new Map(),     // box key -> {spent, pending, since}
  newSeq: 0,
  lastActivity: Date.now(),
  messageTimer: null,
  lockReason: "",
};

const band = (score) => (score === null || score === undefined ? "none"
  : score >= BANDS.high ? "high" : score >= BANDS.mid ? "mid" : "low");
const isTodo = (box) => box.state === "untouched" || (box.state === "added" && box.productId === null);
const current = () => state.boxes.find((box) => box.key === state.selected) || null;
const product = (id) => state.products.get(id) || null;
const productName = (id) => product(id)?.name ?? `Product ${id}`;
const frameUrl = (id, tail = "") => `${config.apiFrames}${id}/${tail}`;
const plural = (n, word, many = `${word}s`) => `${n} ${n === 1 ? word : many}`;
const fmt = (value, digits = 2) => (typeof value === "number" ? value.toFixed(digits) : "–");

// ---------------------------------------------------------------- viewport and search

const viewport = new Viewport(refs.viewport, refs.stage, {
  onChange: () => updateDensity(),
  onClick: (event) => {
    if (!state.frame) return;
    const [x, y] = viewport.toImage(event.clientX, event.clientY);
    const hits = state.boxes.filter(({ bbox: [bx, by, bw, bh] }) => x >= bx && x <= bx + bw && y >= by && y <= by + bh);
    hits.sort((a, b) => a.bbox[2] * a.bbox[3] - b.bbox[2] * b.bbox[3]);
    if (hits.length) select(hits[0].key, { reveal: false });
    refs.viewport.focus({ preventScroll: true });
  },
  onDraw: (rect, done) => {
    state.draft = done ? null : rect;
    if (done) finishDrawing(rect);
    else renderOverlay();
  },
});

const search = new ProductSearch(refs.search, refs.results, {
  url: config.apiSearch,
  store: () => state.frame?.store_id,
  onPick: (found) => {
    state.products.set(found.id, found);
    search.clear();
    focusWorkspace();
    setProduct(found.id);
  },
  onLeave: () => {
    search.clear();
    focusWorkspace();
    const box = current();
    if (box && box.state === "added" && box.productId === null) {
      showMessage(`New box #${box.n} still needs a product: press / to search, or Delete to drop it.`, "warn");
    }
  },
  onError: (message) => showMessage(message, "error"),
});

function focusWorkspace() {
  refs.viewport.focus({ preventScroll: true });
}

// ---------------------------------------------------------------- loading frames

function readingOrder(boxes) {
  // Rows: a box joins the row whose first box spans its vertical centre; left to right within a row.
  const byCentre = [...boxes].sort((a, b) => (a.bbox[1] + a.bbox[3] / 2) - (b.bbox[1] + b.bbox[3] / 2));
  const rows = [];
  for (const box of byCentre) {
    const centre = box.bbox[1] + box.bbox[3] / 2;
    const row = rows[rows.length - 1];
    if (row && centre >= row.top && centre <= row.bottom) row.boxes.push(box);
    else rows.push({ top: box.bbox[1], bottom: box.bbox[1] + box.bbox[3], boxes: [box] });
  }
  return rows.flatMap((row) => row.boxes.sort((a, b) => a.bbox[0] - b.bbox[0]));
}

function workingBox(raw) {
  const suggestion = raw.suggestion ? raw.suggestion.id : null;
  if (raw.suggestion) state.products.set(raw.suggestion.id, raw.suggestion);
  let answer = "untouched";
  let productId = null;
  if (raw.label) {
    productId = raw.label.product_id;
    answer = productId === null ? "deleted" : productId === suggestion ? "confirmed" : "corrected";
  }
  return {
    key: `b${raw.id}`, id: raw.id, bbox: raw.bbox.map(Number), source: raw.source,
    detectorScore: raw.detector_score, suggestion, score: raw.candidates[0]?.score ?? null,
    candidates: raw.candidates, state: answer, productId, n: 0,
  };
}

function load(frame, { editable }) {
  state.frame = frame;
  state.shownPredictions = frame.boxes.map((raw) => raw.prediction_id).filter((id) => id !== null && id !== undefined);
  state.products = new Map(frame.products.map((p) => [p.id, p]));
  state.boxes = readingOrder(frame.boxes.map(workingBox));
  state.boxes.forEach((box, index) => { box.n = index + 1; });
  state.undo = [];
  state.redo = [];
  state.timing = new Map();
  state.newSeq = 0;
  state.selected = null;
  state.editable = editable;
  state.lockReason = "";
  state.drawing = false;
  state.draft = null;
  viewport.mode = "pan";
  search.clear();
  const served = new Map(state.boxes.map((box) => [box.key, { ...box }]));
  if (editable) { restoreDraft(); restoreHistory(served); }

  root.classList.toggle("locked", !editable);
  refs.search.disabled = !editable;
  root.classList.remove("empty", "drawing");
  refs.empty.hidden = true;
  refs.stage.hidden = false;
  refs.title.textContent = `Frame #${frame.id}`;
  const when = frame.captured_at
    ? new Date(frame.captured_at).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }) : "time unknown";
  refs.meta.textContent = `${frame.store} / ${frame.camera} / ${frame.shelf} · ${when}`;
  document.title = `Label frame #${frame.id} · Shelf annotator`;
  if (editable) {
    const url = config.frameLabelUrl.replace("/0/", `/${frame.id}/`);
    if (location.pathname !== url) history.replaceState(null, "", url);
  }
  refs.image.src = frame.image_url;
  refs.overlay.setAttribute("viewBox", `0 0 ${frame.width} ${frame.height}`);
  viewport.setImageSize(frame.width, frame.height);
  const first = state.boxes.find(isTodo) || state.boxes[0];
  if (first) select(first.key, { reveal: false });
  render();
  focusWorkspace();
}

async function openNext(previous = "") {
  beginLoading("Finding the next frame…");
  try {
    const { status, data } = await request("POST", config.apiNext);
    state.loading = false;
    if (status === 204) {
      showEmpty(previous);
      return;
    }
    load(data, { editable: true });
    showMessage(previous ? `${previous} Now frame #${data.id}.` : `Frame #${data.id} is yours to label.`,
      previous ? "success" : "info");
  } catch (error) {
    state.loading = false;
    loadFailed(error, () => openNext(previous));
  }
}

async function openFrame(id) {
  beginLoading(`Opening frame #${id}…`);
  try {
    const { data } = await request("POST", frameUrl(id, "lease/"));
    state.loading = false;
    load(data, { editable: true });
    showMessage(`Frame #${data.id} is yours to label.`, "info");
  } catch (error) {
    state.loading = false;
    if (error instanceof ApiError && error.status === 409) {
      // Held by someone else (or already labelled): show it, read-only.
      try {
        const { data } = await request("GET", frameUrl(id));
        load(data, { editable: false });
      } catch { /* the message below says enough */ }
      lock(`${error.detail} You can look at this frame but not edit it.`);
    } else {
      loadFailed(error, () => openFrame(id));
    }
  }
}

function beginLoading(text) {
  state.loading = true;
  showMessage(text, "info", [], { sticky: true });
}

function loadFailed(error, retry) {
  const text = error instanceof ApiError ? error.detail : `${error.message} Check your connection.`;
  showMessage(text, "error", [{ label: "Try again", run: retry }]);
}

function lock(text) {
  state.editable = false;
  state.lockReason = text;
  refs.search.disabled = true;
  root.classList.add("locked");
  showLock();
  render();
}

function showLock() {
  showMessage(state.lockReason || "This frame is read-only for you.", "locked",
    [{ label: "Label the next frame", run: () => openNext() }], { sticky: true });
}

function showEmpty(previous) {
  state.frame = null;
  state.boxes = [];
  state.selected = null;
  state.editable = false;
  root.classList.add("empty");
  root.classList.remove("locked");
  refs.stage.hidden = true;
  refs.title.textContent = "Nothing to label";
  refs.meta.textContent = "";
  if (location.pathname !== config.labelUrl) history.replaceState(null, "", config.labelUrl);
  const again = el("button", { type: "button", class: "primary", "data-action": "check-again" }, "Check again");
  refs.empty.replaceChildren(
    el("h2", { text: "Nothing to label right now" }),
    el("p", { text: "Every scheduled frame is labelled or being labelled by someone else." }),
    el("p", {}, again, " ", el("a", { href: config.framesUrl, class: "button" }, "All frames")),
  );
  refs.empty.hidden = false;
  if (previous) showMessage(previous, "success", [], { sticky: true });
  else hideMessage();
  render();
  again.focus();
}

// ---------------------------------------------------------------- drafts (answers survive a reload)

const draftKey = (frameId) => `shelf-annotator:draft:${config.user}:${frameId}`;

function saveDraft() {
  if (!state.frame || !state.editable) return;
  saveHistory();
  const touched = state.boxes.filter((box) => box.state !== "untouched");
  const spent = Object.fromEntries([...state.timing].map(([key, t]) => [key, t.spent]));
  const products = [...new Set(state.boxes.map((b) => b.productId).filter((id) => id !== null))]
    .map(product).filter(Boolean);
  try {
    localStorage.setItem(draftKey(state.frame.id), JSON.stringify({
      boxes: touched.map(({ key, id, bbox, state: answer, productId, n }) => ({ key, id, bbox, state: answer, productId, n })),
      newSeq: state.newSeq, spent, products,
    }));
  } catch { /* storage full or disabled: the answers stay in memory */ }
}

// Undo history survives a reload too: in sessionStorage (this tab only), keyed by the frame and the
// annotator holding its lease, stamped with the frame's box ids so a frame pre-labelled again meanwhile
// does not get a stale history. Snapshots keep only what actions change; the rest comes from the frame.
const HISTORY_KEPT = 50;
const historyPrefix = (frameId) => `shelf-annotator:undo:${frameId}:`;
const historyKey = () => `${historyPrefix(state.frame.id)}${state.frame.leased_by || config.user}`;
const servedBoxIds = () => state.frame.boxes.map((raw) => raw.id).join(",");

function slim(saved) {
  return { selected: saved.selected, newSeq: saved.newSeq,
           boxes: saved.boxes.map(({ key, id, bbox, state: answer, productId, n }) => ({ key, id, bbox, state: answer, productId, n })) };
}

function saveHistory() {
  if (!state.frame || !state.editable) return;
  const undo = state.undo.slice(-HISTORY_KEPT).map(slim);
  const redo = state.redo.slice(-HISTORY_KEPT).map(slim);
  // Products picked by search are not in the frame JSON: keep them so a redo after a reload can name them.
  const ids = new Set([...undo, ...redo].flatMap((snap) => snap.boxes.map((b) => b.productId)).filter((id) => id !== null));
  try {
    sessionStorage.setItem(historyKey(), JSON.stringify({
      boxIds: servedBoxIds(), undo, redo, products: [...ids].map(product).filter(Boolean),
    }));
  } catch { /* storage full or disabled: the history stays in memory */ }
}

function clearHistory(frameId) {
  try {
    for (const key of Object.keys(sessionStorage)) if (key.startsWith(historyPrefix(frameId))) sessionStorage.removeItem(key);
  } catch { /* nothing to clear */ }
}

// served: box key -> the box as the frame JSON gave it (before the draft was applied).
function restoreHistory(served) {
  let saved;
  try { saved = JSON.parse(sessionStorage.getItem(historyKey()) || "null"); } catch { saved = null; }
  if (!saved || saved.boxIds !== servedBoxIds()) return;
  for (const p of saved.products || []) if (!state.products.has(p.id)) state.products.set(p.id, p);
  const fatten = (snap) => {
    const boxes = [];
    for (const b of snap.boxes || []) {
      if (b.id === null) {
        boxes.push({ source: "manual", detectorScore: null, suggestion: null, score: null, candidates: [], ...b });
      } else if (served.has(b.key)) {
        boxes.push({ ...served.get(b.key), ...b });
      } else {
        return null;
      }
    }
    return { boxes, selected: snap.selected, newSeq: snap.newSeq || 0 };
  };
  state.undo = (saved.undo || []).map(fatten).filter(Boolean);
  state.redo = (saved.redo || []).map(fatten).filter(Boolean);
}

function clearDraft(frameId) {
  try { localStorage.removeItem(draftKey(frameId)); } catch { /* nothing to clear */ }
}

function restoreDraft() {
  let draft;
  try { draft = JSON.parse(localStorage.getItem(draftKey(state.frame.id)) || "null"); } catch { draft = null; }
  if (!draft) return;
  const byKey = new Map(state.boxes.map((box) => [box.key, box]));
  let restored = 0;
  for (const p of draft.products || []) if (!state.products.has(p.id)) state.products.set(p.id, p);
  for (const saved of draft.boxes || []) {
    if (saved.id === null) {
      state.boxes.push({ key: saved.key, id: null, bbox: saved.bbox, source: "manual", detectorScore: null,
                         suggestion: null, score: null, candidates: [], state: "added",
                         productId: saved.productId, n: saved.n });
      restored += 1;
    } else if (byKey.has(saved.key)) {
      const box = byKey.get(saved.key);
      box.productId = saved.productId;
      box.state = saved.state === "deleted" ? "deleted"
        : saved.productId === box.suggestion ? "confirmed" : "corrected";
      restored += 1;
    }
  }
  state.newSeq = draft.newSeq || 0;
  for (const [key, spent] of Object.entries(draft.spent || {})) timing(key).spent = spent;
  state.boxes.sort((a, b) => a.n - b.n);
  if (restored) queueMicrotask(() => showMessage(`Restored your unsent answers for ${plural(restored, "box", "boxes")}.`, "info"));
}

// ---------------------------------------------------------------- time spent per box

function timing(key) {
  let entry = state.timing.get(key);
  if (!entry) {
    entry = { spent: 0, pending: 0, since: null };
    state.timing.set(key, entry);
  }
  return entry;
}

function pauseTiming(key) {
  if (key === null) return;
  const entry = timing(key);
  if (entry.since !== null) entry.pending += performance.now() - entry.since;
  entry.since = null;
}

function resumeTiming(key) {
  if (key === null || document.hidden) return;
  timing(key).since = performance.now();
}

// The box was answered: the time it was selected until now counts for it.
function recordTime(key) {
  pauseTiming(key);
  const entry = timing(key);
  entry.spent += entry.pending;
  entry.pending = 0;
  if (state.selected === key) resumeTiming(key);
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden) pauseTiming(state.selected);
  else resumeTiming(state.selected);
});

// ---------------------------------------------------------------- actions

function guard() {
  if (state.busy) return false;
  if (!state.editable) {
    if (state.frame) showLock();
    return false;
  }
  return true;
}

function remember() {
  state.undo.push(snapshot());
  if (state.undo.length > 200) state.undo.shift();
  state.redo = [];
}

function snapshot() {
  return { boxes: state.boxes.map((box) => ({ ...box })), selected: state.selected, newSeq: state.newSeq };
}

function restore(saved) {
  pauseTiming(state.selected);
  state.boxes = saved.boxes;
  state.newSeq = saved.newSeq;
  state.selected = state.boxes.some((box) => box.key === saved.selected) ? saved.selected : (state.boxes[0]?.key ?? null);
  resumeTiming(state.selected);
  saveDraft();
  render();
  const box = current();
  if (box) viewport.reveal(box.bbox);
}

function undo() {
  if (!guard()) return;
  if (!state.undo.length) { showMessage("Nothing to undo.", "info"); return; }
  state.redo.push(snapshot());
  restore(state.undo.pop());
  showMessage("Undone.", "info");
}

function redo() {
  if (!guard()) return;
  if (!state.redo.length) { showMessage("Nothing to redo.", "info"); return; }
  state.undo.push(snapshot());
  restore(state.redo.pop());
  showMessage("Redone.", "info");
}

function select(key, { reveal = true } = {}) {
  if (state.selected !== key) {
    pauseTiming(state.selected);
    state.selected = key;
    resumeTiming(key);
  }
  render();
  const box = current();
  if (box && reveal) viewport.reveal(box.bbox);
}

function step(direction) {
  if (!state.boxes.length) return;
  const index = state.boxes.findIndex((box) => box.key === state.selected);
  const next = (index + direction + state.boxes.length) % state.boxes.length;
  select(state.boxes[next].key);
}

// Select the next box still to do after the current one (wrapping); say so when none is left.
function advance() {
  const index = state.boxes.findIndex((box) => box.key === state.selected);
  for (let k = 1; k <= state.boxes.length; k += 1) {
    const box = state.boxes[(index + k) % state.boxes.length];
    if (isTodo(box)) {
      select(box.key);
      return;
    }
  }
  render();
  showMessage("Every box is answered: submit with Ctrl+Enter or s.", "success");
}

function setProduct(productId) {
  const box = current();
  if (!box || !guard()) return;
  remember();
  box.productId = productId;
  box.state = box.id === null ? "added" : productId === box.suggestion ? "confirmed" : "corrected";
  recordTime(box.key);
  hideMessage();
  saveDraft();
  advance();
}

function confirm() {
  const box = current();
  if (!box || !guard()) return;
  if (box.state === "untouched") {
    if (box.suggestion !== null) setProduct(box.suggestion);
    else {
      showMessage(`Box #${box.n} has no suggestion: pick a product with / (search), or delete it.`, "warn");
      search.focus("");
    }
  } else if (box.state === "added" && box.productId === null) {
    search.focus("");
  } else {
    advance();
  }
}

function pickCandidate(index) {
  const box = current();
  if (!box || !guard()) return;
  const candidate = box.candidates[index];
  if (!candidate || index >= MAX_CANDIDATES) {
    showMessage(`Box #${box.n} has no candidate ${index + 1}.`, "warn");
    return;
  }
  setProduct(candidate.product_id);
}

function removeBox() {
  const box = current();
  if (!box || !guard()) return;
  remember();
  if (box.id === null) {
    // A box drawn here simply goes away.
    const index = state.boxes.indexOf(box);
    state.boxes.splice(index, 1);
    state.timing.delete(box.key);
    state.selected = null;
    const next = state.boxes.slice(index).concat(state.boxes.slice(0, index)).find(isTodo)
      || state.boxes[Math.min(index, state.boxes.length - 1)];
    saveDraft();
    if (next) select(next.key); else render();
    showMessage(`New box #${box.n} removed.`, "info");
    return;
  }
  box.state = "deleted";
  box.productId = null;
  recordTime(box.key);
  hideMessage();
  saveDraft();
  advance();
}

function confirmRemaining() {
  if (!guard()) return;
  const todo = state.boxes.filter((box) => box.state === "untouched" && box.suggestion !== null);
  const stuck = state.boxes.filter((box) => isTodo(box) && !todo.includes(box));
  if (!todo.length) {
    showMessage(stuck.length ? `Nothing to confirm: ${listBoxes(stuck)} need a product.` : "No untouched box left.", "info");
    return;
  }
  remember();
  for (const box of todo) {
    box.state = "confirmed";
    box.productId = box.suggestion;
    recordTime(box.key);
  }
  saveDraft();
  if (stuck.length) {
    select(stuck[0].key);
    showMessage(`Confirmed ${plural(todo.length, "suggestion")}. Still to do: ${listBoxes(stuck)} (no suggestion).`, "warn");
  } else {
    render();
    showMessage(`Confirmed ${plural(todo.length, "suggestion")}. Every box is answered: submit with Ctrl+Enter or s.`, "success");
  }
}

function listBoxes(boxes) {
  const names = boxes.slice(0, 12).map((box) => `#${box.n}`);
  if (boxes.length > 12) names.push(`and ${boxes.length - 12} more`);
  return names.join(", ");
}

function startDrawing() {
  if (!guard() || !state.frame) return;
  state.drawing = true;
  viewport.mode = "draw";
  root.classList.add("drawing");
  showMessage("Drag on the image to draw the new box (Esc cancels).", "info", [], { sticky: true });
  focusWorkspace();
}

function stopDrawing() {
  state.drawing = false;
  state.draft = null;
  viewport.mode = "pan";
  root.classList.remove("drawing");
}

function finishDrawing(rect) {
  stopDrawing();
  if (!rect || rect[2] < 3 || rect[3] < 3) {
    hideMessage();
    renderOverlay();
    showMessage("No box drawn: press n and drag across the product.", "info");
    return;
  }
  const left = Math.round(rect[0]);
  const top = Math.round(rect[1]);
  const bbox = [left, top, Math.max(1, Math.round(rect[0] + rect[2]) - left), Math.max(1, Math.round(rect[1] + rect[3]) - top)];
  remember();
  state.newSeq += 1;
  const box = {
    key: `new${state.newSeq}`, id: null, bbox, source: "manual", detectorScore: null, suggestion: null, score: null,
    candidates: [], state: "added", productId: null, n: Math.max(0, ...state.boxes.map((b) => b.n)) + 1,
  };
  state.boxes.push(box);
  saveDraft();
  select(box.key);
  showMessage(`New box #${box.n}: type its product, ↑ ↓ to choose, Enter to pick.`, "info", [], { sticky: true });
  search.focus("");
}

// ---------------------------------------------------------------- submit

function answers() {
  return state.boxes.map((box) => {
    const spent = Math.min(MAX_TIME_MS, Math.round(timing(box.key).spent));
    if (box.id === null) return { bbox: box.bbox, product_id: box.productId, time_spent_ms: spent };
    if (box.state === "deleted") return { id: box.id, deleted: true, time_spent_ms: spent };
    return { id: box.id, product_id: box.productId, time_spent_ms: spent };
  });
}

async function submit() {
  if (!state.frame || !guard()) return;
  if (state.drawing) stopDrawing();
  const todo = state.boxes.filter(isTodo);
  if (todo.length) {
    select(todo[0].key);
    showMessage(
      `Not submitted: ${plural(todo.length, "box", "boxes")} still to do: ${listBoxes(todo)}. `
      + "Answer each one, or press Shift+Enter to confirm the remaining suggestions.",
      "error", [{ label: "Confirm remaining", run: confirmRemaining }], { sticky: true });
    return;
  }
  const frameId = state.frame.id;
  state.busy = true;
  root.classList.add("busy");
  showMessage(`Submitting frame #${frameId}…`, "info", [], { sticky: true });
  try {
    // What was shown goes with the answers: the server judges confirmed or corrected against it, and
    // refuses (409) if the frame was pre-labelled again since.
    const body = { boxes: answers(), shown_predictions: state.shownPredictions };
    const { data } = await request("POST", frameUrl(frameId, "submit/"), { body });
    clearDraft(frameId);
    clearHistory(frameId);
    state.busy = false;
    root.classList.remove("busy");
    const summary = `Frame #${data.frame_id} submitted: ${data.confirmed} confirmed, ${data.corrected} corrected, `
      + `${data.added} added, ${data.deleted} deleted.`;
    await openNext(summary);
  } catch (error) {
    state.busy = false;
    root.classList.remove("busy");
    if (error instanceof ApiError && error.status === 409) {
      await reloadAfterConflict(frameId, error.detail);
    } else if (error instanceof ApiError) {
      showMessage(`Not submitted: ${error.detail}`, "error", [], { sticky: true });
    } else {
      // No answer from the server: everything stays as it is; submitting again retries.
      showMessage(`Not submitted: ${error.message} Your answers are kept; retry with s or Ctrl+Enter.`, "error",
        [{ label: "Retry", run: submit }], { sticky: true });
    }
    render();
  }
}

// A refused submit: if the frame can still be leased, it was pre-labelled again meanwhile. Load it
// again with its new suggestions, keeping the answers of boxes whose suggestion did not change; the
// others are to do again (they were decided against a suggestion that is gone). Otherwise lock it.
async function reloadAfterConflict(frameId, detail) {
  const before = new Map(state.boxes.filter((box) => box.id !== null).map((box) => [box.key, box.suggestion]));
  let data;
  try {
    ({ data } = await request("POST", frameUrl(frameId, "lease/")));
  } catch {
    lock(`${detail} Your answers were not saved.`);
    return;
  }
  load(data, { editable: true });
  const changed = state.boxes.filter((box) => box.id !== null && box.state !== "untouched" && box.state !== "deleted"
    && before.has(box.key) && before.get(box.key) !== box.suggestion);
  for (const box of changed) {
    box.state = "untouched";
    box.productId = null;
  }
  saveDraft();
  const todo = state.boxes.find(isTodo);
  if (todo) select(todo.key); else render();
  const text = `Frame #${frameId} was pre-labelled again while you worked and is reloaded with its new suggestions. `
    + (changed.length ? `Answer again: ${listBoxes(changed)} (their suggestion changed); your other answers are kept.`
      : "Your answers are kept: check them and submit again.");
  // After the note of the restored draft, which load() queues the same way.
  queueMicrotask(() => showMessage(text, "warn", [], { sticky: true }));
}

// Keep the lease while the annotator works; say so at once if someone else got the frame.
setInterval(async () => {
  if (!state.frame || !state.editable || state.busy || Date.now() - state.lastActivity > IDLE_MS) return;
  try {
    await request("POST", frameUrl(state.frame.id, "lease/"));
  } catch (error) {
    if (error instanceof ApiError && error.status === 409) lock(`${error.detail} Your lease on this frame ran out.`);
  }
}, LEASE_RENEW_MS);

// ---------------------------------------------------------------- messages

function showMessage(text, kind = "info", actions = [], { sticky = false } = {}) {
  clearTimeout(state.messageTimer);
  refs.message.hidden = false;
  refs.message.className = `ws-message ${kind}`;
  refs.message.setAttribute("role", kind === "error" || kind === "locked" ? "alert" : "status");
  refs["message-text"].textContent = text;
  refs["message-actions"].replaceChildren(...actions.map(({ label, run }) => {
    const button = el("button", { type: "button" }, label);
    button.addEventListener("mousedown", (event) => event.preventDefault());
    button.addEventListener("click", () => { run(); });
    return button;
  }));
  if (!sticky && (kind === "info" || kind === "success")) {
    state.messageTimer = setTimeout(hideMessage, 6000);
  }
}

function hideMessage() {
  clearTimeout(state.messageTimer);
  refs.message.hidden = true;
}

// ---------------------------------------------------------------- rendering

function render() {
  renderOverlay();
  renderTags();
  renderPanel();
  renderProgress();
}

function boxClasses(box) {
  const classes = ["box", `state-${box.state}`];
  if (box.state === "untouched") classes.push(`band-${band(box.score)}`);
  if (isTodo(box)) classes.push("todo");
  if (box.key === state.selected) classes.push("selected");
  return classes.join(" ");
}

function renderOverlay() {
  if (!state.frame) { refs.overlay.replaceChildren(); return; }
  const nodes = [];
  const largestFirst = [...state.boxes].sort((a, b) => b.bbox[2] * b.bbox[3] - a.bbox[2] * a.bbox[3]);
  for (const box of largestFirst) {
    const [x, y, w, h] = box.bbox;
    const group = svg("g", { class: boxClasses(box), "data-key": box.key, "data-n": box.n });
    group.append(svg("rect", { x, y, width: w, height: h, "vector-effect": "non-scaling-stroke" }));
    if (box.state === "deleted") {
      group.append(svg("path", { d: `M${x} ${y}L${x + w} ${y + h}M${x + w} ${y}L${x} ${y + h}`,
                                  "vector-effect": "non-scaling-stroke", class: "cross" }));
    }
    nodes.push(group);
  }
  const box = current();
  if (box) {
    const [x, y, w, h] = box.bbox;
    const attrs = { x, y, width: w, height: h, "vector-effect": "non-scaling-stroke" };
    nodes.push(svg("rect", { ...attrs, class: "halo" }), svg("rect", { ...attrs, class: `focus ${boxClasses(box)}` }));
  }
  if (state.draft) {
    const [x, y, w, h] = state.draft;
    nodes.push(svg("rect", { x, y, width: w, height: h, class: "draft", "vector-effect": "non-scaling-stroke" }));
  }
  refs.overlay.replaceChildren(...nodes);
}

function shownProduct(box) {
  if (box.state === "deleted") return null;
  if (box.state === "untouched") return box.suggestion;
  return box.productId;
}

function tagText(box) {
  if (box.state === "deleted") return "deleted";
  const id = shownProduct(box);
  if (id === null) return box.id === null ? "new box" : "no suggestion";
  return productName(id);
}

function renderTags() {
  if (!state.frame) { refs.tags.replaceChildren(); return; }
  const { width, height } = state.frame;
  refs.tags.replaceChildren(...state.boxes.map((box) => {
    const [x, y, w] = box.bbox;
    return el("div", {
      class: `ws-tag ${boxClasses(box)}`,
      style: { left: `${(100 * x) / width}%`, top: `${(100 * y) / height}%`, maxWidth: `${(100 * w) / width}%` },
    }, el("b", { text: box.n }), el("span", { text: tagText(box) }));
  }));
  updateDensity();
}

// Names on the image only while boxes are wide enough on screen to hold them.
function updateDensity() {
  if (!state.frame || !state.boxes.length) return;
  const widths = state.boxes.map((box) => box.bbox[2]).sort((a, b) => a - b);
  const median = widths[Math.floor(widths.length / 2)];
  refs.stage.classList.toggle("compact", median * viewport.scale < 64);
  refs.zoom.textContent = `${Math.round(viewport.scale * 100)}%`;
}

const STATE_SYMBOLS = { confirmed: "✓", corrected: "✎", added: "+", deleted: "✕" };

const STATE_LABELS = {
  untouched: "to do", confirmed: "confirmed", corrected: "corrected", added: "added", deleted: "deleted",
};

function renderPanel() {
  const box = current();
  root.classList.toggle("no-box", !box);
  renderCrop(box);
  renderAnswer(box);
  renderCandidates(box);
}

function renderCrop(box) {
  const crop = refs.crop;
  if (!box || !state.frame) {
    crop.style.backgroundImage = "none";
    crop.style.width = "100%";
    return;
  }
  const [x, y, w, h] = box.bbox;
  const frameWidth = crop.parentElement.clientWidth || 340;
  const maxHeight = 210;
  const scale = Math.min(frameWidth / w, maxHeight / h);
  Object.assign(crop.style, {
    width: `${w * scale}px`,
    height: `${h * scale}px`,
    backgroundImage: `url("${state.frame.image_url}")`,
    backgroundSize: `${state.frame.width * scale}px ${state.frame.height * scale}px`,
    backgroundPosition: `${-x * scale}px ${-y * scale}px`,
  });
  crop.setAttribute("aria-label", `Box #${box.n}, enlarged`);
}

function renderAnswer(box) {
  if (!box) {
    refs.answer.replaceChildren(el("p", { class: "ws-muted", text: state.frame ? "This frame has no boxes: draw one with n." : "" }));
    return;
  }
  const shown = shownProduct(box);
  const head = el("div", { class: "ws-answer-head" },
    el("span", { class: "ws-box-number", text: `#${box.n}` }),
    el("span", { class: `ws-badge state-${box.state} ${box.state === "untouched" ? `band-${band(box.score)}` : ""}`,
                 text: box.state === "added" && box.productId === null ? "needs a product" : STATE_LABELS[box.state] }),
    el("span", { class: "ws-muted ws-box-size",
                 text: `${Math.round(box.bbox[2])}×${Math.round(box.bbox[3])} px${box.detectorScore != null ? ` · detector ${fmt(box.detectorScore)}` : ""}` }),
  );
  let body;
  if (box.state === "deleted") {
    body = el("p", { class: "ws-answer-note" }, "Deleted as a false box. ", el("kbd", { text: "u" }), " undoes it.");
  } else if (shown === null) {
    body = el("p", { class: "ws-answer-note" },
      box.id === null ? "New box: search for its product " : "No suggestion: pick a product ",
      el("kbd", { text: "/" }));
  } else {
    const item = product(shown);
    const note = box.state === "untouched"
      ? `Suggestion · score ${fmt(box.score, 3)}`
      : box.state === "corrected" && box.suggestion !== null ? `Was suggested: ${productName(box.suggestion)}`
      : box.state === "confirmed" ? "Suggestion confirmed" : "Added here";
    body = el("div", { class: "ws-product" },
      thumbnail(item || { id: shown, name: productName(shown) }, "large"),
      el("div", { class: "ws-product-text" },
        el("strong", { class: "name", text: productName(shown), title: productName(shown) }),
        el("small", { text: [item?.sku, item?.category].filter(Boolean).join(" · ") }),
        el("small", { class: "ws-muted", text: note })));
  }
  refs.answer.replaceChildren(head, body);
}

function why(components) {
  const parts = [];
  if (typeof components.knn === "number") {
    let knn = `kNN ${fmt(components.knn)}`;
    if (typeof components.knn_count === "number") {
      knn += ` (${plural(Math.round(components.knn_count), "neighbour")}`;
      if (typeof components.knn_mean === "number" && components.knn_count > 1) knn += `, mean ${fmt(components.knn_mean)}`;
      knn += ")";
    }
    parts.push(knn);
  }
  if (typeof components.realgram === "number") {
    const shelf = [`shelf +${fmt(components.realgram)}`];
    const detail = [];
    if (typeof components.realgram_count === "number") detail.push(`seen ${Math.round(components.realgram_count)}×`);
    if (typeof components.realgram_overlap === "number") detail.push(`overlap ${fmt(components.realgram_overlap)}`);
    if (typeof components.realgram_recency === "number") detail.push(`recency ${fmt(components.realgram_recency)}`);
    if (detail.length) shelf.push(`(${detail.join(", ")})`);
    parts.push(shelf.join(" "));
  }
  if (typeof components.tracking === "number") {
    const source = components.tracking_confirmed === 1 ? "labelled" : "suggested";
    let track = `${source} on the previous frame +${fmt(components.tracking)}`;
    if (typeof components.tracking_similarity === "number") track += ` (looks ${fmt(components.tracking_similarity)} alike)`;
    parts.push(track);
  }
  if (typeof components.reranker === "number") parts.push(`model ${Math.round(100 * components.reranker)}%`);
  return parts.join(" · ");
}

function renderCandidates(box) {
  const list = refs.candidates;
  if (!box) { list.replaceChildren(); return; }
  const candidates = box.candidates.slice(0, MAX_CANDIDATES);
  if (!candidates.length) {
    list.replaceChildren(el("li", { class: "none", text: box.id === null
      ? "A new box has no candidates: search the catalogue below."
      : "No candidates: nothing like this crop is labelled yet. Search the catalogue below." }));
    return;
  }
  const best = Math.max(...candidates.map((c) => c.score), 1e-9);
  list.replaceChildren(...candidates.map((candidate, index) => {
    const item = product(candidate.product_id);
    const chosen = box.state !== "untouched" && box.state !== "deleted" && box.productId === candidate.product_id;
    const row = el("li", {
      class: ["ws-candidate", chosen && "chosen", candidate.product_id === box.suggestion && "suggested",
              `band-${band(candidate.score)}`].filter(Boolean).join(" "),
      dataset: { index }, title: `Pick with ${index + 1}`,
    },
    el("kbd", { text: index + 1 }),
    thumbnail(item || { id: candidate.product_id, name: productName(candidate.product_id) }),
    el("div", { class: "ws-product-text" },
      el("span", { class: "name", text: productName(candidate.product_id), title: productName(candidate.product_id) }),
      el("small", { class: "why", text: why(candidate.components || {}) })),
    el("div", { class: "ws-score" },
      el("span", { text: fmt(candidate.score, 3) }),
      el("i", { style: { width: `${Math.max(4, Math.min(100, (100 * candidate.score) / best))}%` } })),
    );
    return row;
  }));
}

function renderProgress() {
  const counts = Object.fromEntries(STATES.map((name) => [name, 0]));
  let todo = 0;
  for (const box of state.boxes) {
    if (isTodo(box)) todo += 1;
    else counts[box.state] += 1;
  }
  const total = state.boxes.length;
  const done = total - todo;
  if (!state.frame) { refs.progress.replaceChildren(); return; }
  refs.progress.replaceChildren(
    el("div", { class: "ws-progress-line" },
      el("span", { class: "ws-progress-text", text: `${done} / ${total} answered` }),
      el("span", { class: "ws-progress-bar" }, el("i", { style: { width: `${total ? (100 * done) / total : 0}%` } }))),
    el("div", { class: "ws-progress-line" }, ...STATES.filter((name) => counts[name]).map((name) =>
      el("span", { class: `ws-chip state-${name}`, title: `${counts[name]} ${name}` },
        el("span", { class: "ws-chip-symbol", "aria-hidden": "true", text: STATE_SYMBOLS[name] }), ` ${counts[name]}`)),
    todo ? el("span", { class: "ws-chip todo", title: `${todo} to do`, text: `${todo} to do` }) : null),
  );
}

// ---------------------------------------------------------------- help overlay

function toggleHelp(open = refs.help.hidden) {
  refs.help.hidden = !open;
  if (!open) focusWorkspace();
}

// ---------------------------------------------------------------- input

const ACTIONS = {
  "zoom-in": () => viewport.zoom(1.25),
  "zoom-out": () => viewport.zoom(0.8),
  "zoom-fit": () => viewport.fit(),
  draw: () => startDrawing(),
  undo: () => undo(),
  redo: () => redo(),
  "confirm-all": () => confirmRemaining(),
  submit: () => submit(),
  help: () => toggleHelp(),
  confirm: () => confirm(),
  delete: () => removeBox(),
  prev: () => step(-1),
  next: () => step(1),
  "check-again": () => openNext(),
};

// Buttons act on click but never keep the focus, so the keys keep working after a click.
root.addEventListener("mousedown", (event) => {
  if (event.target.closest("button")) event.preventDefault();
});
root.addEventListener("click", (event) => {
  state.lastActivity = Date.now();
  const button = event.target.closest("[data-action]");
  if (button && ACTIONS[button.dataset.action]) {
    ACTIONS[button.dataset.action]();
    return;
  }
  const candidate = event.target.closest(".ws-candidate");
  if (candidate) pickCandidate(Number(candidate.dataset.index));
});
refs.help.addEventListener("click", (event) => { if (event.target === refs.help) toggleHelp(false); });

document.addEventListener("keydown", (event) => {
  state.lastActivity = Date.now();
  const key = event.key;
  const ctrl = event.ctrlKey || event.metaKey;
  if (!refs.help.hidden) {
    if (key === "Escape" || key === "?") { event.preventDefault(); toggleHelp(false); }
    return;
  }
  const resolved = resolveKey(event);
  if (resolved && resolved.action === "submit" && ctrl) { event.preventDefault(); submit(); return; }
  const target = event.target;
  if (target.closest && target.closest("input, textarea, select, [contenteditable]")) return; // the search has its own keys
  if (ctrl && resolved && (resolved.action === "undo" || resolved.action === "redo")) {
    event.preventDefault(); if (resolved.action === "undo") undo(); else redo(); return;
  }
  if (ctrl || event.altKey) return; // the browser's own shortcuts
  if (target.closest && target.closest("button, a") && (key === "Enter" || key === " " || key === "Tab")) return;
  if (state.loading) return;

  const pan = 80;
  const panBy = { ArrowRight: [-pan, 0], ArrowDown: [0, -pan], ArrowLeft: [pan, 0], ArrowUp: [0, pan] };
  const actions = {
    next: () => step(1), previous: () => step(-1),
    pan: () => viewport.panBy(...panBy[key]),
    confirm: () => confirm(), confirmRemaining: () => confirmRemaining(),
    search: () => { if (guard() && current()) search.focus(""); },
    remove: () => removeBox(), draw: () => startDrawing(),
    undo: () => undo(), redo: () => redo(), submit: () => submit(),
    zoomIn: () => viewport.zoom(1.25), zoomOut: () => viewport.zoom(0.8), fit: () => viewport.fit(),
    zoomToBox: () => { const box = current(); if (box) viewport.zoomTo(box.bbox); },
    pickCandidate: () => pickCandidate(resolved.argument),
    help: () => toggleHelp(true),
    cancel: () => {
      if (state.drawing) { stopDrawing(); renderOverlay(); showMessage("Drawing cancelled.", "info"); }
      else hideMessage();
    },
  };
  const handler = resolved ? actions[resolved.action] : null;
  if (!handler) return;
  event.preventDefault();
  if (!state.frame && key !== "?" && key !== "Escape") return;
  handler();
});

// ---------------------------------------------------------------- start

window.addEventListener("resize", () => renderCrop(current()));
if (config.frameId) openFrame(Number(config.frameId));
else openNext();
