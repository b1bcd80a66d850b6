"""Build the small demo subset of GroceryStoreDataset that ships in the repository.

The full dataset (Klasson, Zhang, Kjellström, WACV 2019; MIT licence) holds 5,421
in-store photos of 81 products. The demo needs only a handful of products, a few
photos each, and must stay small enough to commit, so this one-off script:

* picks the classes in ``SELECTED`` (mostly packaged goods, with look-alike pairs
  such as two Bravo juices, two Alpro soy milks and two Yoggi yoghurts, plus a
  few fruit and vegetables),
* copies each class's iconic catalogue image to ``catalog/<sku>/iconic.jpg`` and
  ``PHOTOS_PER_CLASS`` in-store photos from the official *train* split, picked
  evenly spaced over the class's list so the selection is deterministic,
* downscales every image to at most ``MAX_SIDE`` px on its longest side and
  re-encodes it as JPEG (quality ``JPEG_QUALITY``, no metadata),
* writes ``classes.csv`` (``sku,name,category``), the dataset's ``LICENSE`` and a
  ``README.md`` that lists exactly which source files were used.

Usage::

    python demo/make_subset.py --source /path/to/grocery-store --out demo/grocery-subset

``--source`` is the dataset root (the folder holding ``LICENSE`` and ``dataset/``).
Running it twice gives byte-identical output.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

MAX_SIDE = 256
JPEG_QUALITY = 85
PHOTOS_PER_CLASS = 8

#: Fine classes shipped with the demo, as spelled in the dataset's classes.csv.
SELECTED: tuple[str, ...] = (
    # Juice: two Bravo cartons of the same design (apple / orange), two more brands.
    "Bravo-Apple-Juice",
    "Bravo-Orange-Juice",
    "Tropicana-Apple-Juice",
    "God-Morgon-Orange-Juice",
    # Milk: same Arla carton in red / green.
    "Arla-Standard-Milk",
    "Arla-Medium-Fat-Milk",
    # Oatly: oat milk and oatghurt share the brand look.
    "Oatly-Oat-Milk",
    "Oatly-Natural-Oatghurt",
    # Alpro: fresh and shelf soy milk are near-identical cartons.
    "Alpro-Fresh-Soy-Milk",
    "Alpro-Shelf-Soy-Milk",
    "Alpro-Blueberry-Soyghurt",
    # Yoggi: strawberry / vanilla bottles of the same design.
    "Yoggi-Strawberry-Yoghurt",
    "Yoggi-Vanilla-Yoghurt",
    # A few fruit and vegetables.
    "Banana",
    "Granny-Smith",
    "Red-Bell-Pepper",
)


@dataclass(frozen=True)
class SourceClass:
    """One fine class of the source dataset."""

    sku: str
    class_id: int
    category: str
    iconic: Path
    photos: tuple[Path, ...]


def read_classes(source: Path) -> dict[str, SourceClass]:
    """Read ``dataset/classes.csv`` and the train split into ``{sku: SourceClass}``."""
    dataset = source / "dataset"
    photos: dict[int, list[Path]] = {}
    for line in (dataset / "train.txt").read_text().splitlines():
        if not line.strip():
            continue
        rel, fine, _coarse = (part.strip() for part in line.split(","))
        photos.setdefault(int(fine), []).append(dataset / rel)

    classes: dict[str, SourceClass] = {}
    with open(dataset / "classes.csv", newline="") as fh:
        reader = csv.reader(fh)
        next(reader)  # header
        for name, class_id, coarse, _coarse_id, iconic, _description in reader:
            cid = int(class_id)
            classes[name] = SourceClass(
                sku=name,
                class_id=cid,
                category=coarse,
                iconic=dataset / iconic.lstrip("/"),
                photos=tuple(sorted(photos.get(cid, []))),
            )
    return classes


def evenly_spaced(items: tuple[Path, ...], count: int) -> list[Path]:
    """Pick ``count`` items spread evenly over ``items`` (first and last included)."""
    if len(items) <= count:
        return list(items)
    step = (len(items) - 1) / (count - 1)
    return [items[round(i * step)] for i in range(count)]


def downscale(src: Path, dst: Path) -> None:
    """Save ``src`` as an RGB JPEG of at most ``MAX_SIDE`` px to ``dst`` (never upscales)."""
    with Image.open(src) as img:
        img = img.convert("RGB")
        scale = MAX_SIDE / max(img.size)
        if scale < 1:
            size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            img = img.resize(size, Image.Resampling.LANCZOS)
        dst.parent.mkdir(parents=True, exist_ok=True)
        img.save(dst, "JPEG", quality=JPEG_QUALITY, optimize=True)


def human_name(sku: str) -> str:
    """``"Bravo-Apple-Juice"`` -> ``"Bravo Apple Juice"``."""
    return sku.replace("-", " ")


README_TEMPLATE = """\
# Demo subset of GroceryStoreDataset

A tiny slice of the [GroceryStoreDataset](https://github.com/marcusklasson/GroceryStoreDataset)
(M. Klasson, C. Zhang, H. Kjellström, *A Hierarchical Grocery Store Image Dataset with Visual
and Semantic Labels*, IEEE WACV 2019), shipped with this project under the dataset's MIT licence
(see `LICENSE` in this folder). It feeds `make demo`: `demo/compose.py` pastes these photos onto
synthetic shelves to make camera frames, and `catalog/` serves as the product catalogue.

```
@inproceedings{{klasson2019hierarchical,
  title={{A Hierarchical Grocery Store Image Dataset with Visual and Semantic Labels}},
  author={{Klasson, Marcus and Zhang, Cheng and Kjellstr{{\\"o}}m, Hedvig}},
  booktitle={{IEEE Winter Conference on Applications of Computer Vision (WACV)}},
  year={{2019}}
}}
```

## Layout

- `classes.csv`: `sku,name,category`; `sku` is the dataset's fine class name (also the folder
  name under `catalog/`), `category` its coarse class.
- `catalog/<sku>/iconic.jpg`: the class's iconic (catalogue) image.
- `catalog/<sku>/<sku>_NNN.jpg`: {photos} in-store photos from the dataset's official *train*
  split (same file names as in the dataset), picked evenly spaced over the class's sorted list.

Every image was downscaled to at most {max_side} px on its longest side (Lanczos, never
upscaled) and re-encoded as JPEG at quality {quality} without metadata.

## Selection

{count} of the 81 fine classes: mostly packaged goods, with look-alike pairs on purpose (Bravo
apple / orange juice, Arla standard / medium-fat milk, Alpro fresh / shelf soy milk, Yoggi
strawberry / vanilla yoghurt) so the demo shows realistic confusions, plus a few fruit and
vegetables.

| sku | category | source class id | in-store photos |
| --- | --- | --- | --- |
{rows}

## Rebuilding

This folder was made by `demo/make_subset.py` (deterministic):

```
python demo/make_subset.py --source /path/to/GroceryStoreDataset --out demo/grocery-subset
```
"""


def build_subset(source: Path, out: Path) -> None:
    """Write the demo subset of the dataset at ``source`` into ``out``."""
    classes = read_classes(source)
    missing = [sku for sku in SELECTED if sku not in classes]
    if missing:
        raise SystemExit(f"classes not in {source}: {', '.join(missing)}")

    catalog = out / "catalog"
    if catalog.exists():
        shutil.rmtree(catalog)  # our own output: start clean so stale files never linger
    out.mkdir(parents=True, exist_ok=True)

    chosen = sorted((classes[sku] for sku in SELECTED), key=lambda c: c.class_id)
    rows = []
    for cls in chosen:
        downscale(cls.iconic, catalog / cls.sku / "iconic.jpg")
        picked = evenly_spaced(cls.photos, PHOTOS_PER_CLASS)
        for photo in picked:
            downscale(photo, catalog / cls.sku / photo.name)
        numbers = ", ".join(p.stem.rsplit("_", 1)[-1] for p in picked)
        rows.append(f"| {cls.sku} | {cls.category} | {cls.class_id} | {numbers} |")

    with open(out / "classes.csv", "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["sku", "name", "category"])
        for cls in chosen:
            writer.writerow([cls.sku, human_name(cls.sku), cls.category])

    shutil.copyfile(source / "LICENSE", out / "LICENSE")
    (out / "README.md").write_text(
        README_TEMPLATE.format(
            photos=PHOTOS_PER_CLASS,
            max_side=MAX_SIDE,
            quality=JPEG_QUALITY,
            count=len(chosen),
            rows="\n".join(rows),
        )
    )


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, required=True,
                        help="GroceryStoreDataset root (holds LICENSE and dataset/)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "grocery-subset",
                        help="output folder (default: demo/grocery-subset)")
    args = parser.parse_args(argv)
    build_subset(args.source, args.out)


if __name__ == "__main__":
    main()
