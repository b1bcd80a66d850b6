import { test } from "node:test";
import assert from "node:assert/strict";
import { KEYMAP, chordOf, resolveKey, overlayRows } from "../src/workspace_keys.js";

test("chords name modifiers", () => {
  assert.equal(chordOf({ key: "z", ctrlKey: true }), "Ctrl+z");
  assert.equal(chordOf({ key: "Z", ctrlKey: true, shiftKey: true }), "Ctrl+Shift+z");
  assert.equal(chordOf({ key: "Tab", shiftKey: true }), "Shift+Tab");
  assert.equal(chordOf({ key: "U", shiftKey: true }), "U");
});

test("keys resolve to actions", () => {
  assert.deepEqual(resolveKey({ key: "Enter" }), { action: "confirm" });
  assert.deepEqual(resolveKey({ key: "Enter", shiftKey: true }), { action: "confirmRemaining" });
  assert.deepEqual(resolveKey({ key: "3" }), { action: "pickCandidate", argument: 2 });
  assert.deepEqual(resolveKey({ key: "y", ctrlKey: true }), { action: "redo" });
  assert.equal(resolveKey({ key: "q" }), null);
});

test("no key is bound twice and the overlay lists every entry", () => {
  const all = KEYMAP.flatMap((entry) => entry.keys);
  assert.equal(new Set(all).size, all.length);
  const rows = overlayRows();
  assert.equal(rows.length, KEYMAP.length);
  assert.ok(rows.some((row) => row.keys.includes("Space")));
});
