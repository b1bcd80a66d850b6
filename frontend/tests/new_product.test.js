import { test } from "node:test";
import assert from "node:assert/strict";

import { createProductFromBox, productProblem } from "../src/new_product.js";

function fakeApi(answer) {
  const calls = [];
  return {
    calls,
    async request(method, url, options) {
      calls.push({ method, url, body: options.body });
      if (answer instanceof Error) throw answer;
      return { status: 201, data: answer };
    },
  };
}

test("creates the product with trimmed fields and the box, and resolves to its JSON", async () => {
  const product = { id: 7, sku: "OAT-1", name: "Oat milk", category: "Dairy", thumbnail_url: null };
  const api = fakeApi(product);
  const created = await createProductFromBox(api, { name: " Oat milk ", sku: "OAT-1 ", category: "Dairy", boxId: 12 });
  assert.deepEqual(created, product);
  assert.deepEqual(api.calls, [{ method: "POST", url: "/api/products/",
    body: { name: "Oat milk", sku: "OAT-1", category: "Dairy", box: 12 } }]);
});

test("leaves out an empty category, no box and no company", async () => {
  const api = fakeApi({ id: 1 });
  await createProductFromBox(api, { name: "Rye", sku: "R1", category: "  " });
  assert.deepEqual(api.calls[0].body, { name: "Rye", sku: "R1" });
});

test("refuses a missing name or SKU without calling the server", async () => {
  const api = fakeApi({ id: 1 });
  await assert.rejects(createProductFromBox(api, { name: " ", sku: "S" }), /needs a name/);
  await assert.rejects(createProductFromBox(api, { name: "N", sku: "" }), /needs a SKU/);
  assert.equal(api.calls.length, 0);
  assert.equal(productProblem({ name: "N", sku: "x".repeat(101) }), "A SKU has at most 100 characters.");
  assert.equal(productProblem({ name: "N", sku: "S" }), null);
});

test("the server's refusal (a taken SKU) comes through as the caller's error", async () => {
  const api = fakeApi(new Error("SKU 'DUP' is already the product 'Old one'"));
  await assert.rejects(createProductFromBox(api, { name: "N", sku: "DUP" }), /already the product/);
});
