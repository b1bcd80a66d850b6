// The QA review grid: select crops by keyboard or mouse, then mark OK, remove or relabel them
// through POST /api/review/. The page reloads after a change, so the grid shows what is stored.
const grid = document.getElementById("crop-grid");
const bar = document.getElementById("review-bar");
const crops = [...grid.querySelectorAll(".crop")];
const relabel = document.getElementById("relabel");
const options = document.getElementById("relabel-options");
const message = document.getElementById("review-message");
const csrf = bar.querySelector("input[name=csrfmiddlewaretoken]").value;
let focused = 0;
let found = new Map();  // product name -> id, from the type-ahead

function selected() { return crops.filter((c) => c.getAttribute("aria-selected") === "true"); }

function refresh() {
  crops.forEach((c, i) => c.classList.toggle("focused", i === focused));
  document.getElementById("selected-count").textContent = `${selected().length} selected`;
}

function toggle(crop) {
  crop.setAttribute("aria-selected", crop.getAttribute("aria-selected") === "true" ? "false" : "true");
  refresh();
}

async function review(action, productId = null) {
  const boxIds = selected().map((c) => Number(c.dataset.box));
  if (!boxIds.length) { message.textContent = "Select crops first (Space or click)."; return; }
  const response = await fetch(bar.dataset.api, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
    body: JSON.stringify({ box_ids: boxIds, action, product_id: productId }),
  });
  const body = await response.json();
  if (!response.ok) { message.textContent = body.detail || JSON.stringify(body); return; }
  message.textContent = `${body.reviewed} reviewed, ${body.changed} changed.`;
  window.location.reload();
}

relabel.addEventListener("input", async () => {
  const url = `${bar.dataset.search}?q=${encodeURIComponent(relabel.value)}`;
  const products = await (await fetch(url)).json();
  found = new Map(products.map((p) => [p.name, p.id]));
  options.replaceChildren(...products.map((p) => Object.assign(document.createElement("option"), { value: p.name })));
});

relabel.addEventListener("keydown", (event) => {
  if (event.key === "Enter") {
    event.preventDefault();
    const id = found.get(relabel.value);
    if (id === undefined) { message.textContent = `No product named "${relabel.value}".`; return; }
    review("relabel", id);
  } else if (event.key === "Escape") { relabel.blur(); }
});

bar.querySelectorAll("button[data-action]").forEach((button) =>
  button.addEventListener("click", () => review(button.dataset.action)));

crops.forEach((crop, i) => crop.addEventListener("click", () => { focused = i; toggle(crop); }));

document.addEventListener("keydown", (event) => {
  if (event.target === relabel || !crops.length) return;
  const columns = Math.max(1, Math.round(grid.clientWidth / crops[0].offsetWidth));
  const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns, ArrowUp: -columns };
  if (event.key in moves) {
    focused = Math.min(crops.length - 1, Math.max(0, focused + moves[event.key]));
    crops[focused].scrollIntoView({ block: "nearest" });
  } else if (event.key === " ") { toggle(crops[focused]); }
  else if (event.key === "a") { crops.forEach((c) => c.setAttribute("aria-selected", "true")); }
  else if (event.key === "o") { review("ok"); }
  else if (event.key === "x") { review("remove"); }
  else if (event.key === "/") { relabel.focus(); }
  else return;
  event.preventDefault();
  refresh();
});

refresh();
