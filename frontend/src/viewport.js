// Zoom and pan of the frame image. The stage (image + SVG overlay + tags) is sized to the zoom
// (not CSS-scaled, so strokes and text stay crisp) and moved with a translation.

const clamp = (value, low, high) => Math.min(Math.max(value, low), high);

export class Viewport {
  // element: the clipping viewport; stage: the sized, moved content.
  // onChange(): after every zoom or pan; onClick(event): a press released without moving;
  // onDraw(rect, done): while drawing (mode "draw"), rect in image pixels.
  constructor(element, stage, { onChange = () => {}, onClick = () => {}, onDraw = () => {} } = {}) {
    this.element = element;
    this.stage = stage;
    this.onChange = onChange;
    this.onClick = onClick;
    this.onDraw = onDraw;
    this.width = 1;
    this.height = 1;
    this.scale = 1;
    this.tx = 0;
    this.ty = 0;
    this.fitted = true;
    this.mode = "pan";
    this.press = null;
    element.addEventListener("wheel", (event) => this.wheel(event), { passive: false });
    element.addEventListener("pointerdown", (event) => this.down(event));
    element.addEventListener("pointermove", (event) => this.move(event));
    element.addEventListener("pointerup", (event) => this.up(event));
    element.addEventListener("pointercancel", () => { this.press = null; });
    new ResizeObserver(() => { if (this.fitted) this.fit(); else this.apply(); }).observe(element);
  }

  setImageSize(width, height) {
    this.width = width;
    this.height = height;
    this.fit();
  }

  get fitScale() {
    const box = this.element.getBoundingClientRect();
    if (!box.width || !box.height) return 1;
    return Math.min((box.width - 24) / this.width, (box.height - 24) / this.height);
  }

  fit() {
    const box = this.element.getBoundingClientRect();
    this.scale = this.fitScale;
    this.tx = (box.width - this.width * this.scale) / 2;
    this.ty = (box.height - this.height * this.scale) / 2;
    this.fitted = true;
    this.apply();
  }

  // Zoom by a factor around a point of the viewport (client coordinates; default: its centre).
  zoom(factor, clientX, clientY) {
    const box = this.element.getBoundingClientRect();
    const cx = (clientX ?? box.left + box.width / 2) - box.left;
    const cy = (clientY ?? box.top + box.height / 2) - box.top;
    const fit = this.fitScale;
    const scale = clamp(this.scale * factor, fit * 0.5, Math.max(fit * 20, 8));
    const px = (cx - this.tx) / this.scale;
    const py = (cy - this.ty) / this.scale;
    this.scale = scale;
    this.tx = cx - px * scale;
    this.ty = cy - py * scale;
    this.fitted = false;
    this.apply();
  }

  panBy(dx, dy) {
    this.tx += dx;
    this.ty += dy;
    this.fitted = false;
    this.apply();
  }

  // Zoom so that the image rectangle [x, y, w, h] fills about half the viewport, centred.
  zoomTo([x, y, w, h]) {
    const box = this.element.getBoundingClientRect();
    const fit = this.fitScale;
    this.scale = clamp(Math.min(box.width * 0.5 / w, box.height * 0.5 / h), fit, Math.max(fit * 20, 8));
    this.centreOn([x, y, w, h]);
  }

  centreOn([x, y, w, h]) {
    const box = this.element.getBoundingClientRect();
    this.tx = box.width / 2 - (x + w / 2) * this.scale;
    this.ty = box.height / 2 - (y + h / 2) * this.scale;
    this.fitted = false;
    this.apply();
  }

  // When zoomed in, bring the rectangle into view if it is not (fully) visible.
  reveal([x, y, w, h]) {
    if (this.fitted) return;
    const box = this.element.getBoundingClientRect();
    const left = this.tx + x * this.scale;
    const top = this.ty + y * this.scale;
    const right = left + w * this.scale;
    const bottom = top + h * this.scale;
    if (left < 0 || top < 0 || right > box.width || bottom > box.height) this.centreOn([x, y, w, h]);
  }

  toImage(clientX, clientY) {
    const box = this.element.getBoundingClientRect();
    return [(clientX - box.left - this.tx) / this.scale, (clientY - box.top - this.ty) / this.scale];
  }

  apply() {
    // Keep at least a corner of the image on screen.
    const box = this.element.getBoundingClientRect();
    const w = this.width * this.scale;
    const h = this.height * this.scale;
    const margin = 60;
    this.tx = clamp(this.tx, Math.min(margin - w, 0), Math.max(box.width - margin, 0));
    this.ty = clamp(this.ty, Math.min(margin - h, 0), Math.max(box.height - margin, 0));
    this.stage.style.width = `${w}px`;
    this.stage.style.height = `${h}px`;
    this.stage.style.transform = `translate(${this.tx}px, ${this.ty}px)`;
    this.onChange();
  }

  wheel(event) {
    event.preventDefault();
    const delta = event.deltaMode === 1 ? event.deltaY * 16 : event.deltaY;
    this.zoom(Math.exp(-delta * 0.0015), event.clientX, event.clientY);
  }

  down(event) {
    if (event.button !== 0) return;
    this.element.setPointerCapture(event.pointerId);
    this.press = { x: event.clientX, y: event.clientY, tx: this.tx, ty: this.ty, moved: false,
                   start: this.toImage(event.clientX, event.clientY), mode: this.mode };
    if (this.mode === "draw") event.preventDefault();
  }

  move(event) {
    const press = this.press;
    if (!press) return;
    const dx = event.clientX - press.x;
    const dy = event.clientY - press.y;
    if (!press.moved && Math.hypot(dx, dy) < 4) return;
    press.moved = true;
    if (press.mode === "draw") {
      this.onDraw(this.rectangle(press.start, this.toImage(event.clientX, event.clientY)), false);
    } else {
      this.element.classList.add("panning");
      this.tx = press.tx + dx;
      this.ty = press.ty + dy;
      this.fitted = false;
      this.apply();
    }
  }

  up(event) {
    const press = this.press;
    this.press = null;
    this.element.classList.remove("panning");
    if (!press) return;
    if (press.mode === "draw") {
      this.onDraw(press.moved ? this.rectangle(press.start, this.toImage(event.clientX, event.clientY)) : null, true);
    } else if (!press.moved) {
      this.onClick(event);
    }
  }

  // The rectangle [x, y, w, h] between two image points, clipped to the image.
  rectangle([x0, y0], [x1, y1]) {
    const left = clamp(Math.min(x0, x1), 0, this.width);
    const top = clamp(Math.min(y0, y1), 0, this.height);
    const right = clamp(Math.max(x0, x1), 0, this.width);
    const bottom = clamp(Math.max(y0, y1), 0, this.height);
    return [left, top, right - left, bottom - top];
  }
}
