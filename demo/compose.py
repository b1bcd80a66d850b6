"""Compose synthetic shelf-camera frames for ``make demo``.

The demo needs shelf photos that look like the ones the system sees in production
(fixed cameras watching shelves for days) with ground-truth boxes, but real shelf
data cannot be shipped in the repository. This module builds them from the small
MIT-licensed GroceryStoreDataset subset in ``demo/grocery-subset``: it draws a
shelf (back wall, boards, price labels) with PIL, pastes a crop of one of the
product's in-store photos into every stocked facing of a planogram, and saves one
frame per camera every few hours.

The simulated store ("demo-store") has three cameras, each watching one shelf of
3 rows x 7-8 facings, with its own lighting (a warm, dim juice fridge; a cold,
bright dairy fridge; a neutral wooden shelf). Over the simulated days:

* facings sell out at random (an empty facing has no box) and are refilled at the
  scheduled restocks, and one product sells out completely before a restock
  (``SOLD_OUT_PRODUCT``);
* one product moves to the other end of its row (``MOVED_PRODUCT``);
* one product that is on no shelf at first appears mid-way (``NEW_PRODUCT``).

Output (``compose(out_dir)`` or ``python -m demo.compose --out DIR``):

* ``images/*.jpg`` and ``annotations.json``, COCO in the format of the real shelf
  dataset (``captured_at``, ``store``, ``camera``, ``shelf`` on every image, bbox
  ``[x, y, w, h]`` in pixels);
  (which frames the demo labels and which it pre-labels is the importer's annotation
  schedule, not the composer's: see ``annotator.coco.CocoDataset.split_by_schedule``);
* ``scenario.json``, the planograms and a log of the events, for the demo's story.

Everything is drawn from ``numpy.random.default_rng`` streams seeded by ``seed``,
so the same seed gives byte-identical JSON and identical images.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

DEFAULT_SUBSET = Path(__file__).resolve().parent / "grocery-subset"
DEFAULT_START = date(2024, 3, 4)  # a Monday

STORE = "demo-store"
FRAME_W, FRAME_H = 1024, 576
JPEG_QUALITY = 90

#: Store hours: frames are only taken while the store is open.
OPEN_FROM_HOUR, OPEN_HOURS = 8, 13
#: Deliveries arrive at 06:00 every this many days (day 0 starts fully stocked).
RESTOCK_EVERY_DAYS = 2
#: Chance per open hour that a stocked facing sells out.
SALES_RATE_PER_HOUR = 0.009

# Shelf geometry, in frame pixels (the scene is drawn with a margin around the frame
# so that camera jitter never shows its edge).
MARGIN = 48
WORLD_W, WORLD_H = FRAME_W + 2 * MARGIN, FRAME_H + 2 * MARGIN
POST_W = 28  # gondola uprights left and right
HEADER_H = 34
ROW_H = 176
BOARD_FRONT_H = 22
BOARD_LIP_H = 6
TOP_GAP = 14  # between a product's top and the board above
INNER_X0, INNER_X1 = POST_W + 8, FRAME_W - POST_W - 8

#: Scripted events (shelf, sku); tests and the demo narrative refer to these.
SOLD_OUT_PRODUCT = ("shelf-1", "Bravo-Orange-Juice")
MOVED_PRODUCT = ("shelf-3", "Oatly-Natural-Oatghurt")
NEW_PRODUCT = ("shelf-2", "Alpro-Shelf-Soy-Milk")


# --------------------------------------------------------------------------- scenario


@dataclass(frozen=True)
class Row:
    """One shelf row: the sku of every facing, left to right."""

    skus: tuple[str, ...]
    loose: bool = False  # loose produce in crates: wider, lower facings

    @staticmethod
    def of(*blocks: tuple[str, int], loose: bool = False) -> Row:
        """Build a row from ``(sku, facings)`` blocks."""
        return Row(tuple(sku for sku, n in blocks for _ in range(n)), loose)


@dataclass(frozen=True)
class Camera:
    """A fixed camera, the shelf it watches and how that shelf looks on it."""

    name: str
    shelf: str
    planogram: tuple[Row, ...]
    style: str  # "metal" (fridge) or "wood"
    wall: tuple[int, int, int]  # back wall colour
    gains: tuple[float, float, float]  # per-channel light (colour temperature x brightness)
    vignette: float  # 0 = none; fraction of light lost in the corners
    noise: float  # sensor noise, std in 8-bit levels
    minute_offset: int  # cameras fire a few minutes apart


CAMERAS: tuple[Camera, ...] = (
    Camera(
        name="cam-1",
        shelf="shelf-1",
        planogram=(
            Row.of(("Bravo-Apple-Juice", 3), ("Bravo-Orange-Juice", 4)),
            Row.of(("Tropicana-Apple-Juice", 4), ("God-Morgon-Orange-Juice", 3)),
            Row.of(("God-Morgon-Orange-Juice", 2), ("Bravo-Orange-Juice", 2), ("Bravo-Apple-Juice", 2)),
        ),
        style="metal",
        wall=(150, 152, 156),
        gains=(0.82, 0.70, 0.52),  # warm and dim
        vignette=0.35,
        noise=5.0,
        minute_offset=0,
    ),
    Camera(
        name="cam-2",
        shelf="shelf-2",
        planogram=(
            Row.of(("Arla-Standard-Milk", 4), ("Arla-Medium-Fat-Milk", 4)),
            Row.of(("Alpro-Fresh-Soy-Milk", 5), ("Oatly-Oat-Milk", 3)),
            Row.of(("Arla-Medium-Fat-Milk", 3), ("Arla-Standard-Milk", 3), ("Oatly-Oat-Milk", 2)),
        ),
        style="metal",
        wall=(196, 200, 204),
        gains=(1.00, 1.08, 1.22),  # cold and bright
        vignette=0.12,
        noise=2.5,
        minute_offset=2,
    ),
    Camera(
        name="cam-3",
        shelf="shelf-3",
        planogram=(
            Row.of(("Yoggi-Strawberry-Yoghurt", 3), ("Yoggi-Vanilla-Yoghurt", 2), ("Alpro-Blueberry-Soyghurt", 2)),
            Row.of(("Oatly-Natural-Oatghurt", 2), ("Alpro-Blueberry-Soyghurt", 3), ("Yoggi-Strawberry-Yoghurt", 2)),
            Row.of(("Banana", 2), ("Granny-Smith", 2), ("Red-Bell-Pepper", 2), loose=True),
        ),
        style="wood",
        wall=(214, 204, 186),
        gains=(1.00, 0.97, 0.92),  # neutral daylight
        vignette=0.22,
        noise=3.5,
        minute_offset=4,
    ),
)


@dataclass(frozen=True)
class PlanogramChange:
    """From the frame at ``at`` (fraction of the run) on, ``cols`` of ``row`` hold ``sku``."""

    kind: str  # "move" or "new-product"
    shelf: str
    row: int
    cols: tuple[int, ...]
    sku: str
    at: float


CHANGES: tuple[PlanogramChange, ...] = (
    # The oatghurt swaps places with the strawberry yoghurt at the other end of its row.
    PlanogramChange("move", "shelf-3", 1, (5, 6), "Oatly-Natural-Oatghurt", at=0.5),
    PlanogramChange("move", "shelf-3", 1, (0, 1), "Yoggi-Strawberry-Yoghurt", at=0.5),
    # A new soy milk takes three of the five facings of its look-alike.
    PlanogramChange("new-product", "shelf-2", 1, (2, 3, 4), "Alpro-Shelf-Soy-Milk", at=0.625),
)


# --------------------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class Product:
    """A catalogue entry of the subset and its in-store photos."""

    sku: str
    name: str
    category: str
    photos: tuple[Path, ...]


def load_catalog(subset: Path = DEFAULT_SUBSET) -> list[Product]:
    """Read ``classes.csv`` and the in-store photos of ``catalog/<sku>/`` (not the iconic image)."""
    products = []
    with open(subset / "classes.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            folder = subset / "catalog" / row["sku"]
            photos = tuple(sorted(p for p in folder.glob("*.jpg") if p.name != "iconic.jpg"))
            if not photos:
                raise FileNotFoundError(f"no in-store photos in {folder}")
            products.append(Product(row["sku"], row["name"], row["category"], photos))
    return products


@lru_cache(maxsize=512)
def _photo(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


# --------------------------------------------------------------------------- simulation


@dataclass(frozen=True)
class Look:
    """How one physical unit on a facing appears: which photo, how cropped and placed."""

    photo: int
    crop: float  # crop height as a fraction of the photo
    cx: float  # crop centre offset, fraction of the photo
    cy: float
    scale: float  # size relative to the slot
    dx: float  # horizontal shift in pixels


@dataclass
class Facing:
    """A facing's current content."""

    sku: str
    stocked: bool
    look: Look


@dataclass(frozen=True)
class FrameState:
    """What one camera frame shows."""

    camera: Camera
    index: int  # frame number of this camera, in time order
    captured_at: datetime
    facings: tuple[tuple[Facing, ...], ...]  # rows of facings (copies)


def _new_look(rng: np.random.Generator, n_photos: int) -> Look:
    return Look(
        photo=int(rng.integers(n_photos)),
        crop=float(rng.uniform(0.62, 0.85)),
        cx=float(rng.uniform(-0.07, 0.07)),
        cy=float(rng.uniform(-0.06, 0.06)),
        scale=float(rng.uniform(0.92, 1.0)),
        dx=float(rng.uniform(-4.0, 4.0)),
    )


def capture_times(start: date, days: int, frames: int, minute_offset: int = 0) -> list[datetime]:
    """Spread ``frames`` capture times evenly over the opening hours of ``days`` days."""
    step = days * OPEN_HOURS / frames
    times = []
    for i in range(frames):
        open_hours = (i + 0.5) * step
        day, hour = divmod(open_hours, OPEN_HOURS)
        minutes = round((OPEN_FROM_HOUR + hour) * 60 / 5) * 5 + minute_offset
        times.append(datetime.combine(start, datetime.min.time()) + timedelta(days=int(day), minutes=minutes))
    return times


def _restocked_between(before: datetime, after: datetime, start: date) -> bool:
    """Whether a 06:00 delivery falls in ``(before, after]``."""
    for day in range((before.date() - start).days + 1, (after.date() - start).days + 1):
        if day % RESTOCK_EVERY_DAYS == 0:
            return True
    return False


def _open_hours_between(before: datetime, after: datetime) -> float:
    """Store-open hours between two capture times (both within opening hours)."""
    def open_clock(t: datetime) -> float:
        return t.toordinal() * OPEN_HOURS + (t.hour + t.minute / 60 - OPEN_FROM_HOUR)

    return max(0.0, open_clock(after) - open_clock(before))


def change_frame(change: PlanogramChange, frames: int) -> int:
    """Frame index (per camera) from which ``change`` is in effect."""
    return min(frames - 1, max(1, int(change.at * frames)))


def simulate(
    camera: Camera,
    products: dict[str, Product],
    seed: int,
    start: date,
    days: int,
    frames: int,
) -> list[FrameState]:
    """Run the stock simulation of one camera's shelf and return its frames in time order."""
    rng = np.random.default_rng([seed, CAMERAS.index(camera), 1])
    times = capture_times(start, days, frames, camera.minute_offset)
    rows = [
        [Facing(sku, True, _new_look(rng, len(products[sku].photos))) for sku in row.skus]
        for row in camera.planogram
    ]

    # The tracked product sells out in the last frame before the first delivery.
    sold_out_at = None
    if camera.shelf == SOLD_OUT_PRODUCT[0]:
        restocks = [i for i in range(1, frames) if _restocked_between(times[i - 1], times[i], start)]
        sold_out_at = restocks[0] - 1 if restocks and restocks[0] > 1 else max(1, frames // 4)

    states = []
    for i, now in enumerate(times):
        if i > 0:
            hours = _open_hours_between(times[i - 1], now)
            if _restocked_between(times[i - 1], now, start):
                for facing in (f for row in rows for f in row if not f.stocked):
                    facing.stocked = True
                    facing.look = _new_look(rng, len(products[facing.sku].photos))
                hours = now.hour + now.minute / 60 - OPEN_FROM_HOUR
            p_sold = 1.0 - math.exp(-SALES_RATE_PER_HOUR * hours)
            for facing in (f for row in rows for f in row):
                if rng.random() < p_sold:  # drawn for every facing: keeps the stream stable
                    facing.stocked = False

        for change in CHANGES:
            if change.shelf == camera.shelf and change_frame(change, frames) == i:
                for col in change.cols:
                    rows[change.row][col] = Facing(
                        change.sku, True, _new_look(rng, len(products[change.sku].photos))
                    )
        if i == sold_out_at:
            for facing in (f for row in rows for f in row if f.sku == SOLD_OUT_PRODUCT[1]):
                facing.stocked = False

        snapshot = tuple(tuple(Facing(f.sku, f.stocked, f.look) for f in row) for row in rows)
        states.append(FrameState(camera, i, now, snapshot))
    return states


# --------------------------------------------------------------------------- drawing


def _row_top(row: int) -> int:
    return HEADER_H + row * ROW_H


def _floor_y(row: int) -> int:
    """Frame y where products of ``row`` stand (top of the board's lip)."""
    return _row_top(row) + ROW_H - BOARD_FRONT_H - BOARD_LIP_H + 2


def _slot_x(col: int, n_cols: int) -> tuple[float, float]:
    width = (INNER_X1 - INNER_X0) / n_cols
    return INNER_X0 + col * width, INNER_X0 + (col + 1) * width


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1], shape (h, w)."""
    coarse = rng.normal(0.0, 0.5, size=(h // cell + 2, w // cell + 2)).astype(np.float32)
    img = Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32)


def _wood(rng: np.random.Generator, h: int, w: int, base: tuple[int, int, int]) -> np.ndarray:
    """A wood-grain texture, float RGB of shape (h, w, 3)."""
    y = np.arange(h, dtype=np.float32)[:, None]
    wobble = _smooth_noise(rng, h, w, cell=24) * 2.5
    grain = 0.5 + 0.5 * np.sin((y + wobble) * 1.7 + _smooth_noise(rng, h, w, cell=64) * 3.0)
    shade = 0.86 + 0.16 * grain + rng.normal(0, 0.025, size=(h, w)).astype(np.float32)
    return np.asarray(base, np.float32)[None, None, :] * shade[..., None]


def _background(camera: Camera, rng: np.random.Generator) -> np.ndarray:
    """Draw the empty shelf of ``camera`` in world coordinates, uint8 (WORLD_H, WORLD_W, 3)."""
    h, w, m = WORLD_H, WORLD_W, MARGIN
    yy = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    light = (1.06 - 0.16 * yy) * (1.0 + 0.05 * _smooth_noise(rng, h, w, cell=56))
    world = np.asarray(camera.wall, np.float32)[None, None, :] * light[..., None]

    if camera.style == "metal":  # perforated back panel
        ys, xs = np.mgrid[0:h, 0:w]
        holes = ((ys % 16) < 3) & ((xs % 16) < 3)
        world[holes] *= 0.55
    else:  # vertical planks
        for x in range(m + 12, w, 92):
            world[:, x : x + 2] *= 0.8

    boards = []  # (y0, y1, kind)
    for r in range(len(camera.planogram)):
        bottom = m + _row_top(r) + ROW_H
        boards.append((bottom - BOARD_FRONT_H - BOARD_LIP_H, bottom - BOARD_FRONT_H, "lip"))
        boards.append((bottom - BOARD_FRONT_H, bottom, "front"))
    for y0, y1, kind in boards:
        if camera.style == "wood":
            base = (168, 118, 72) if kind == "front" else (190, 140, 92)
            world[y0:y1] = _wood(rng, y1 - y0, w, base)
        elif kind == "lip":
            world[y0:y1] = np.linspace(215, 185, y1 - y0, dtype=np.float32)[:, None, None]
        else:
            world[y0:y1] = (118, 122, 128)
            world[y0 : y0 + 2] = (205, 208, 212)

    # Crates under loose produce.
    for r, row in enumerate(camera.planogram):
        if not row.loose:
            continue
        floor = m + _floor_y(r)
        for c in range(len(row.skus)):
            x0, x1 = _slot_x(c, len(row.skus))
            cx0, cx1 = int(m + x0 + 3), int(m + x1 - 3)
            crate = _wood(rng, 46, cx1 - cx0, (150, 104, 60))
            crate[::11] *= 0.6  # slats
            world[floor - 46 : floor, cx0:cx1] = crate

    # Uprights, header and kick plate.
    post = (70, 72, 76) if camera.style == "metal" else (120, 84, 50)
    world[:, : m + POST_W] = post
    world[:, w - m - POST_W :] = post
    world[:, m + POST_W - 3 : m + POST_W] *= 0.6
    world[:, w - m - POST_W : w - m - POST_W + 3] *= 1.3
    world[: m + HEADER_H] = (58, 60, 64) if camera.style == "metal" else (130, 92, 56)
    if camera.style == "metal":
        world[m + HEADER_H - 6 : m + HEADER_H - 2, m + POST_W : w - m - POST_W] = (250, 250, 245)
    kick_top = m + _row_top(len(camera.planogram))
    world[kick_top:] = (52, 52, 55)

    world += rng.normal(0.0, 2.0, size=world.shape).astype(np.float32)
    img = Image.fromarray(np.clip(world, 0, 255).astype(np.uint8))

    # Price labels on the board fronts.
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    for r, row in enumerate(camera.planogram):
        y = m + _row_top(r) + ROW_H - BOARD_FRONT_H + 4
        for c in range(len(row.skus)):
            x0, x1 = _slot_x(c, len(row.skus))
            cx = int(m + (x0 + x1) / 2)
            promo = rng.random() < 0.15
            draw.rectangle((cx - 24, y, cx + 24, y + 14), fill=(250, 215, 40) if promo else (245, 245, 240))
            price = f"{int(rng.integers(12, 39))}.{rng.choice(['90', '50', '95'])}"
            draw.text((cx - 20, y + 1), price, fill=(25, 25, 25), font=font)
    return np.asarray(img)


def _facing_rect(row: Row, r: int, c: int, look: Look) -> tuple[int, int, int, int]:
    """Pasted rectangle (x0, y0, x1, y1) of a facing, in frame coordinates."""
    x0, x1 = _slot_x(c, len(row.skus))
    slot_w = x1 - x0
    max_h = _floor_y(r) - _row_top(r) - TOP_GAP
    if row.loose:
        w = slot_w * 0.86 * look.scale
        h = min(max_h * 0.78, w * 0.9)
        bottom = _floor_y(r) - 14  # sitting in its crate
    else:
        w = slot_w * 0.8 * look.scale
        h = max_h * look.scale
        bottom = _floor_y(r)
    cx = (x0 + x1) / 2 + look.dx
    return round(cx - w / 2), round(bottom - h), round(cx + w / 2), round(bottom)


def _crop(photo: Image.Image, look: Look, size: tuple[int, int]) -> Image.Image:
    """Cut a crop of ``size``'s aspect out of ``photo`` and resize it to ``size``."""
    pw, ph = photo.size
    aspect = size[0] / size[1]
    ch = look.crop * ph
    cw = ch * aspect
    if cw > pw:
        cw, ch = pw, pw / aspect
    cx = min(max(pw / 2 + look.cx * pw, cw / 2), pw - cw / 2)
    cy = min(max(ph / 2 + look.cy * ph, ch / 2), ph - ch / 2)
    box = (cx - cw / 2, cy - ch / 2, cx + cw / 2, cy + ch / 2)
    return photo.resize(size, Image.Resampling.BILINEAR, box=box)


@lru_cache(maxsize=8)
def _vignette(strength: float) -> np.ndarray:
    y = np.linspace(-1.0, 1.0, FRAME_H, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, FRAME_W, dtype=np.float32)[None, :]
    return 1.0 - strength * (x * x + y * y) / 2.0


def render(
    state: FrameState,
    background: np.ndarray,
    products: dict[str, Product],
    rng: np.random.Generator,
) -> tuple[Image.Image, list[tuple[str, tuple[float, float, float, float]]]]:
    """Draw one frame; return it and its boxes as ``(sku, (x, y, w, h))`` in frame pixels."""
    camera = state.camera
    world = background.copy()
    placed = []
    for r, (row, facings) in enumerate(zip(camera.planogram, state.facings)):
        for c, facing in enumerate(facings):
            if not facing.stocked:
                continue
            x0, y0, x1, y1 = _facing_rect(row, r, c, facing.look)
            wx0, wy0, wx1, wy1 = x0 + MARGIN, y0 + MARGIN, x1 + MARGIN, y1 + MARGIN
            world[wy0 + 5 : wy1 - 2, wx0 + 7 : wx1 + 7] = world[wy0 + 5 : wy1 - 2, wx0 + 7 : wx1 + 7] * 0.55
            photo = _photo(products[facing.sku].photos[facing.look.photo])
            world[wy0:wy1, wx0:wx1] = np.asarray(_crop(photo, facing.look, (x1 - x0, y1 - y0)))
            placed.append((facing.sku, (wx0, wy0, wx1, wy1)))

    # Camera jitter: a slightly shifted and zoomed window onto the scene.
    zoom = float(rng.uniform(0.985, 1.015))
    ox, oy = (float(v) for v in np.clip(rng.normal(0.0, 5.0, size=2), -14, 14))
    win_w, win_h = FRAME_W / zoom, FRAME_H / zoom
    left = MARGIN + ox + (FRAME_W - win_w) / 2
    top = MARGIN + oy + (FRAME_H - win_h) / 2
    frame = Image.fromarray(world).resize(
        (FRAME_W, FRAME_H), Image.Resampling.BILINEAR, box=(left, top, left + win_w, top + win_h)
    )

    # Lighting: per-camera colour temperature and brightness, a little flicker, vignette, noise.
    pixels = np.asarray(frame, dtype=np.float32)
    gains = np.asarray(camera.gains, np.float32) * np.float32(1.0 + rng.normal(0.0, 0.03))
    pixels = pixels * gains * _vignette(camera.vignette)[..., None]
    pixels += rng.normal(0.0, camera.noise, size=pixels.shape).astype(np.float32)
    frame = Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))

    boxes = []
    for sku, (wx0, wy0, wx1, wy1) in placed:
        fx0, fx1 = (wx0 - left) * zoom, (wx1 - left) * zoom
        fy0, fy1 = (wy0 - top) * zoom, (wy1 - top) * zoom
        box = _clip_box(fx0, fy0, fx1, fy1)
        if box is not None:
            boxes.append((sku, box))
    return frame, boxes


def _clip_box(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float] | None:
    """Clip to the frame and round inwards to 0.1 px; None when less than half stays visible."""
    cx0, cy0 = math.ceil(max(x0, 0.0) * 10) / 10, math.ceil(max(y0, 0.0) * 10) / 10
    cx1, cy1 = math.floor(min(x1, FRAME_W) * 10) / 10, math.floor(min(y1, FRAME_H) * 10) / 10
    w, h = round(cx1 - cx0, 1), round(cy1 - cy0, 1)
    if w <= 0 or h <= 0 or w * h < 0.5 * (x1 - x0) * (y1 - y0):
        return None
    return cx0, cy0, w, h


# --------------------------------------------------------------------------- COCO


LICENSE_NOTE = (
    "Synthetic frames composed from a subset of GroceryStoreDataset "
    "(M. Klasson, C. Zhang, H. Kjellstrom, WACV 2019), MIT licence, Copyright (c) 2019 Marcus Klasson; "
    "see demo/grocery-subset/LICENSE."
)


@dataclass
class Composed:
    """What ``compose`` produced."""

    coco: dict[str, Any]
    scenario: dict[str, Any]


def compose(
    out_dir: Path,
    seed: int = 0,
    days: int = 6,
    frames_per_camera: int = 8,
    subset: Path = DEFAULT_SUBSET,
    start: date = DEFAULT_START,
) -> Composed:
    """Compose the demo frames into ``out_dir`` and write the JSON files next to them.

    Writes ``images/*.jpg``, ``annotations.json`` and ``scenario.json``.
    """
    if days < 1 or frames_per_camera < 4:
        raise ValueError("need at least 1 day and 4 frames per camera")
    if days * OPEN_HOURS / frames_per_camera < 0.25:
        raise ValueError("too many frames: keep at least 15 minutes between a camera's frames")
    catalog = load_catalog(subset)
    products = {p.sku: p for p in catalog}
    missing = {s for cam in CAMERAS for row in cam.planogram for s in row.skus} | {c.sku for c in CHANGES}
    missing -= products.keys()
    if missing:
        raise ValueError(f"products missing from {subset}: {sorted(missing)}")
    category_ids = {p.sku: i for i, p in enumerate(catalog, start=1)}

    states = [s for cam in CAMERAS for s in simulate(cam, products, seed, start, days, frames_per_camera)]
    states.sort(key=lambda s: (s.captured_at, s.camera.name))

    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    backgrounds = {
        cam.name: _background(cam, np.random.default_rng([seed, i, 2])) for i, cam in enumerate(CAMERAS)
    }
    frame_rngs = {cam.name: np.random.default_rng([seed, i, 3]) for i, cam in enumerate(CAMERAS)}

    images, annotations = [], []
    for image_id, state in enumerate(states, start=1):
        cam = state.camera
        frame, boxes = render(state, backgrounds[cam.name], products, frame_rngs[cam.name])
        file_name = f"images/{cam.name}_{state.captured_at:%Y%m%d-%H%M}.jpg"
        frame.save(out_dir / file_name, "JPEG", quality=JPEG_QUALITY)
        images.append({
            "id": image_id,
            "file_name": file_name,
            "width": FRAME_W,
            "height": FRAME_H,
            "captured_at": state.captured_at.isoformat(timespec="seconds"),
            "store": STORE,
            "camera": cam.name,
            "shelf": cam.shelf,
            "shelf_rows": list(range(1, len(cam.planogram) + 1)),
            "copy": 1,
        })
        for sku, (x, y, w, h) in boxes:
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": category_ids[sku],
                "bbox": [x, y, w, h],
                "area": round(w * h, 1),
                "iscrowd": 0,
            })

    coco = {
        "info": {
            "description": (
                "Synthetic shelf-camera frames for the demo: 3 cameras of one store over "
                f"{days} days, composed by demo/compose.py (seed {seed}) from GroceryStoreDataset photos"
            ),
            "license": LICENSE_NOTE,
            "seed": seed,
            "days": days,
            "frames_per_camera": frames_per_camera,
        },
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": category_ids[p.sku], "name": p.sku, "supercategory": p.category} for p in catalog
        ],
    }
    scenario = _scenario(states, images, start, frames_per_camera)

    _write_json(out_dir / "annotations.json", coco)
    _write_json(out_dir / "scenario.json", scenario)
    return Composed(coco, scenario)


def _scenario(states: list[FrameState], images: list[dict[str, Any]], start: date, frames: int) -> dict[str, Any]:
    """Planograms and a log of what happens when, for the demo's narrative."""
    image_of = {(s.camera.name, s.index): im["id"] for s, im in zip(states, images)}
    by_camera: dict[str, list[FrameState]] = {}
    for s in states:
        by_camera.setdefault(s.camera.name, []).append(s)

    events: list[dict[str, Any]] = []
    for cam in CAMERAS:
        seq = by_camera[cam.name]
        for prev, cur in zip(seq, seq[1:]):
            if _restocked_between(prev.captured_at, cur.captured_at, start):
                events.append({"kind": "restock", "camera": cam.name, "shelf": cam.shelf,
                               "before_image_id": image_of[(cam.name, cur.index)]})
        for s in seq:
            empty = [[r + 1, c + 1] for r, row in enumerate(s.facings) for c, f in enumerate(row) if not f.stocked]
            if cam.shelf == SOLD_OUT_PRODUCT[0]:
                skus = [f for row in s.facings for f in row if f.sku == SOLD_OUT_PRODUCT[1]]
                if skus and not any(f.stocked for f in skus):
                    events.append({"kind": "sold-out", "camera": cam.name, "shelf": cam.shelf,
                                   "sku": SOLD_OUT_PRODUCT[1], "image_id": image_of[(cam.name, s.index)]})
            if empty:
                events.append({"kind": "empty-facings", "camera": cam.name, "shelf": cam.shelf,
                               "image_id": image_of[(cam.name, s.index)], "facings": empty})
    for change in CHANGES:
        cam = next(c for c in CAMERAS if c.shelf == change.shelf)
        i = change_frame(change, frames)
        events.append({"kind": change.kind, "camera": cam.name, "shelf": change.shelf, "sku": change.sku,
                       "row": change.row + 1, "facings": [c + 1 for c in change.cols],
                       "from_image_id": image_of[(cam.name, i)]})
    return {
        "store": STORE,
        "note": "rows and facings are numbered from 1, top row and left facing first",
        "planograms": {cam.shelf: {"camera": cam.name, "rows": [list(r.skus) for r in cam.planogram]}
                       for cam in CAMERAS},
        "events": events,
    }


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: ``python -m demo.compose --out DIR [--seed 0] [--days 6]``."""
    parser = argparse.ArgumentParser(description="Compose synthetic shelf-camera frames for the demo.")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--days", type=int, default=6, help="simulated days (default 6)")
    parser.add_argument("--frames-per-camera", type=int, default=8)
    parser.add_argument("--subset", type=Path, default=DEFAULT_SUBSET, help="GroceryStoreDataset subset folder")
    parser.add_argument("--start", type=date.fromisoformat, default=DEFAULT_START, help="first day, YYYY-MM-DD")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        result = compose(args.out, args.seed, args.days, args.frames_per_camera, args.subset, args.start)
    except ValueError as exc:
        parser.error(str(exc))
    print(
        f"wrote {len(result.coco['images'])} frames, {len(result.coco['annotations'])} boxes, "
        f"to {args.out} in {time.perf_counter() - t0:.1f}s"
    )


if __name__ == "__main__":
    main()
