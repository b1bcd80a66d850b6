// Small DOM helpers. Text always goes in through textContent: product names are data, not HTML.

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "style") Object.assign(node.style, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const SVG = "http://www.w3.org/2000/svg";

export function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

function initials(name) {
  return (name || "?").split(/\s+/).filter(Boolean).slice(0, 2).map((word) => word[0].toUpperCase()).join("");
}

// A product's thumbnail, or its initials on a tint derived from its id when it has no image.
export function thumbnail(product, size = "") {
  const box = el("span", { class: `ws-thumb ${size}`.trim() });
  if (product && product.thumbnail_url) {
    box.append(el("img", { src: product.thumbnail_url, alt: "", loading: "lazy", draggable: "false" }));
  } else {
    const hue = product ? (product.id * 47) % 360 : 0;
    box.style.setProperty("--hue", hue);
    box.classList.add("ws-thumb-initials");
    box.textContent = product ? initials(product.name) : "?";
  }
  return box;
}
