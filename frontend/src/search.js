// Catalogue type-ahead: asks while the annotator types (debounced), cancels stale requests, shows
// results as they come; up/down move the highlight, Enter picks it, Escape leaves.

import { request } from "./api.js";
import { thumbnail } from "./dom.js";

const DEBOUNCE_MS = 120;

export class ProductSearch {
  // input, list: elements; url: the search endpoint; store(): the store id to rank first;
  // onPick(product); onLeave(); onError(message).
  constructor(input, list, { url, store, onPick, onLeave, onError }) {
    this.input = input;
    this.list = list;
    this.url = url;
    this.store = store;
    this.onPick = onPick;
    this.onLeave = onLeave;
    this.onError = onError;
    this.results = [];
    this.active = -1;
    this.timer = null;
    this.controller = null;
    this.shownQuery = null;
    input.addEventListener("input", () => this.schedule());
    input.addEventListener("focus", () => { if (this.shownQuery !== this.input.value.trim()) this.schedule(0); });
    input.addEventListener("keydown", (event) => this.key(event));
    list.addEventListener("mousedown", (event) => event.preventDefault()); // keep the focus in the input
    list.addEventListener("click", (event) => {
      const item = event.target.closest("[data-index]");
      if (item) this.pick(Number(item.dataset.index));
    });
  }

  focus(text) {
    if (text !== undefined) this.input.value = text;
    this.input.focus();
    this.input.select();
  }

  clear() {
    this.cancel();
    this.input.value = "";
    this.results = [];
    this.active = -1;
    this.shownQuery = null;
    this.render();
  }

  cancel() {
    clearTimeout(this.timer);
    if (this.controller) this.controller.abort();
    this.controller = null;
  }

  schedule(delay = DEBOUNCE_MS) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.fetch(), delay);
  }

  async fetch() {
    if (this.controller) this.controller.abort();
    const controller = new AbortController();
    this.controller = controller;
    const query = this.input.value.trim();
    const params = new URLSearchParams({ q: query, limit: "20" });
    const store = this.store();
    if (store) params.set("store", store);
    this.list.classList.add("loading");
    try {
      const { data } = await request("GET", `${this.url}?${params}`, { signal: controller.signal });
      if (controller.signal.aborted) return;
      this.results = data || [];
      this.active = this.results.length ? 0 : -1;
      this.shownQuery = query;
      this.render();
    } catch (error) {
      if (error.name === "AbortError") return;
      this.onError(`Search failed: ${error.message}`);
    } finally {
      if (this.controller === controller) {
        this.controller = null;
        this.list.classList.remove("loading");
      }
    }
  }

  // Whether a search for what the input says is still on its way.
  get pending() {
    return this.controller !== null || this.shownQuery !== this.input.value.trim();
  }

  key(event) {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      if (!this.results.length) return;
      const step = event.key === "ArrowDown" ? 1 : -1;
      this.active = (this.active + step + this.results.length) % this.results.length;
      this.render();
    } else if (event.key === "Enter" && !event.ctrlKey && !event.metaKey && !event.shiftKey) {
      event.preventDefault();
      event.stopPropagation();
      if (this.pending) {
        // Enter typed faster than the answer: pick the top result once it arrives.
        this.cancel();
        this.fetch().then(() => { if (this.results.length) this.pick(this.active); });
      } else if (this.active >= 0) {
        this.pick(this.active);
      }
    } else if (event.key === "Escape" || event.key === "Tab") {
      event.preventDefault();
      event.stopPropagation();
      this.onLeave();
    }
  }

  pick(index) {
    const product = this.results[index];
    if (product) this.onPick(product);
  }

  render() {
    this.list.replaceChildren(...this.results.map((product, index) => {
      const item = document.createElement("li");
      item.dataset.index = index;
      item.id = `ws-result-${index}`;
      item.setAttribute("role", "option");
      item.setAttribute("aria-selected", String(index === this.active));
      if (index === this.active) item.classList.add("active");
      const text = document.createElement("span");
      text.className = "ws-product-text";
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = product.name;
      name.title = product.name; // the row cuts long names with an ellipsis
      const sku = document.createElement("small");
      sku.textContent = [product.sku, product.category].filter(Boolean).join(" · ");
      text.append(name, sku);
      item.append(thumbnail(product), text);
      return item;
    }));
    if (!this.results.length && this.shownQuery !== null && this.shownQuery !== "") {
      const none = document.createElement("li");
      none.className = "none";
      none.textContent = `No product matches “${this.shownQuery}”.`;
      this.list.append(none);
    }
    this.input.setAttribute("aria-expanded", String(this.results.length > 0));
    // A list opened low in a scrolling panel would fall under whatever sits below it (the workspace's
    // sticky Confirm/Delete bar; CSS scroll-margin-bottom keeps it clear): bring the whole list into view.
    if (this.results.length && document.activeElement === this.input) this.list.scrollIntoView({ block: "nearest" });
    if (this.active >= 0) {
      this.input.setAttribute("aria-activedescendant", `ws-result-${this.active}`);
      this.list.children[this.active]?.scrollIntoView({ block: "nearest" });
    } else {
      this.input.removeAttribute("aria-activedescendant");
    }
  }
}
