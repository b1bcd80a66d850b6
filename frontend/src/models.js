// The Models page: while a round or a collection build runs, poll its stored progress and update
// the rows in place (the page itself is rendered by the server).
const POLL_MS = 3000;
const script = document.querySelector("script[data-status]");
const statusUrl = script.dataset.status;

export function running(status) {
  return status.rounds.some((r) => r.state === "running" || r.state === "indexing")
    || status.model_sets.some((s) => s.state === "building");
}

function setText(row, field, text) {
  const cell = row.querySelector(`[data-field="${field}"]`);
  if (cell) cell.textContent = text;
}

export function apply(status, root = document) {
  for (const r of status.rounds) {
    const row = root.querySelector(`tr[data-round="${r.id}"]`);
    if (!row) continue;
    row.querySelector("progress").value = r.progress;
    setText(row, "stage", r.stage);
    setText(row, "message", r.message);
  }
  for (const s of status.model_sets) {
    const row = root.querySelector(`tr[data-model-set="${s.id}"]`);
    if (!row) continue;
    row.querySelector("progress").value = s.progress;
    setText(row, "count", `${s.indexed} / ${s.total}`);
  }
}

let wasRunning = false;

async function poll() {
  try {
    const response = await fetch(statusUrl, { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const status = await response.json();
    apply(status);
    if (running(status)) {
      wasRunning = true;
      setTimeout(poll, POLL_MS);
    } else if (wasRunning) {
      location.reload();  // a round or build just ended: show its figures and state
    }
  } catch {
    setTimeout(poll, POLL_MS * 3);  // the server is away a moment: try again later
  }
}

if (statusUrl) setTimeout(poll, POLL_MS);
