// Creating a product the catalogue lacks, from the workspace (POST /api/products/). No DOM work on
// import: the dialog is built by buildNewProductDialog(document, ...) when the workspace asks for it.
// `api` is anything with request(method, url, {body}) -> {status, data} (api.js's request, or a stand-in).

// What is wrong with the form's values, or null: the server checks again (a taken SKU is its 400).
export function productProblem({ name, sku }) {
  if (!String(name ?? "").trim()) return "The product needs a name.";
  if (!String(sku ?? "").trim()) return "The product needs a SKU.";
  if (String(sku).trim().length > 100) return "A SKU has at most 100 characters.";
  if (String(name).trim().length > 300) return "A name has at most 300 characters.";
  return null;
}

// Creates the product and resolves to its JSON ({id, sku, name, category, thumbnail_url}); the caller
// then labels the box with product.id on submit. `boxId` is sent as `box` for the server to take the
// crop as the product's image once it supports it; `company` only for users of several companies.
export async function createProductFromBox(api, { name, sku, category = null, boxId = null, company = null }) {
  const problem = productProblem({ name, sku });
  if (problem) throw new Error(problem);
  const body = { name: String(name).trim(), sku: String(sku).trim() };
  if (category && String(category).trim()) body.category = String(category).trim();
  if (boxId !== null && boxId !== undefined) body.box = boxId;
  if (company !== null && company !== undefined) body.company = company;
  const { data } = await api.request("POST", "/api/products/", { body });
  return data;
}

// A keyboard-usable form (name, SKU, category; Enter creates, Escape cancels) in a <dialog>.
// onCreate({name, sku, category}) returns a promise; its error message is shown in the dialog.
export function buildNewProductDialog(doc, { onCreate, onCancel = () => {}, name = "" } = {}) {
  const dialog = doc.createElement("dialog");
  dialog.className = "new-product";
  const form = doc.createElement("form");
  form.method = "dialog";
  const fields = {};
  for (const [key, label, value] of [["name", "Name", name], ["sku", "SKU", ""], ["category", "Category (optional)", ""]]) {
    const wrapper = doc.createElement("label");
    wrapper.textContent = label;
    const input = doc.createElement("input");
    input.name = key;
    input.value = value;
    if (key !== "category") input.required = true;
    wrapper.append(input);
    form.append(wrapper);
    fields[key] = input;
  }
  const message = doc.createElement("p");
  message.setAttribute("role", "alert");
  const create = doc.createElement("button");
  create.type = "submit";
  create.textContent = "Create product";
  const cancel = doc.createElement("button");
  cancel.type = "button";
  cancel.textContent = "Cancel";
  form.append(message, create, cancel);
  dialog.append(form);
  const values = () => ({ name: fields.name.value, sku: fields.sku.value, category: fields.category.value });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const problem = productProblem(values());
    if (problem) { message.textContent = problem; return; }
    create.disabled = true;
    try {
      await onCreate(values());
      dialog.close?.();
    } catch (error) {
      message.textContent = error.message || String(error);
    } finally {
      create.disabled = false;
    }
  });
  cancel.addEventListener("click", () => { dialog.close?.(); onCancel(); });
  dialog.addEventListener("cancel", () => onCancel());
  return { dialog, fields, message };
}
