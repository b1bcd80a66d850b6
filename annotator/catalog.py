"""Product catalogues with reference images, read and validated before anything is written.

Two layouts are understood:
- GroceryStoreDataset: ``classes.csv`` (class name, id, coarse class, iconic image path) and split
  files (``train.txt``: image path, class id, coarse id); reference images are the iconic image and
  the images of the chosen split.
- ImageFolder: one folder per product holding its reference images; an optional ``classes.csv``
  (columns ``sku,name,category``, sku = folder name) adds names and categories.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from inference.images import ImageError, image_size

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


class CatalogError(ValueError):
    """A catalogue that cannot be imported; the message names the file and the problem."""


@dataclass
class CatalogProduct:
    sku: str
    name: str
    category: str
    images: list[Path] = field(default_factory=list)
    primary: Path | None = None


def load_catalog(path: str | Path, *, split: str = "train", classes: Path | None = None) -> list[CatalogProduct]:
    root = Path(path)
    if not root.is_dir():
        raise CatalogError(f"{root}: not a directory")
    if classes is not None and not Path(classes).is_file():
        raise CatalogError(f"{classes}: classes file not found")
    if (root / "dataset" / "classes.csv").is_file():
        root = root / "dataset"
    grocery_csv = root / "classes.csv"
    if grocery_csv.is_file() and grocery_csv.read_text(encoding="utf-8-sig", errors="replace").startswith("Class Name"):
        products = _load_grocery_store(root, split)
    else:
        products = _load_image_folder(root, classes or root / "classes.csv")
    if not products:
        raise CatalogError(f"{root}: no products found (expected classes.csv + split files, or one folder per product)")
    for product in products:
        for image in [product.primary, *product.images]:
            if image is None:
                continue
            try:
                image_size(image)
            except ImageError as error:
                raise CatalogError(f"{image}: {error}") from None
    return products


def _load_grocery_store(root: Path, split: str) -> list[CatalogProduct]:
    classes_csv = root / "classes.csv"
    by_id: dict[int, CatalogProduct] = {}
    with classes_csv.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for line_number, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                name, class_id, coarse_name, _coarse_id, iconic = (cell.strip() for cell in row[:5])
                product = CatalogProduct(sku=name, name=name.replace("-", " "), category=coarse_name)
                by_id[int(class_id)] = product
            except ValueError:
                raise CatalogError(f"{classes_csv}:{line_number}: expected name, class id, coarse name, coarse id, iconic path") from None
            if iconic:
                iconic_path = root / iconic.lstrip("/")
                if not iconic_path.is_file():
                    raise CatalogError(f"{classes_csv}:{line_number}: iconic image not found: {iconic_path}")
                product.primary = iconic_path
    split_file = root / f"{split}.txt"
    if not split_file.is_file():
        raise CatalogError(f"{split_file}: split file not found")
    for line_number, line in enumerate(split_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            relative, class_id, _coarse = (cell.strip() for cell in line.split(","))
            product = by_id[int(class_id)]
        except (ValueError, KeyError):
            raise CatalogError(f"{split_file}:{line_number}: expected 'path, class id, coarse id' with a known class id") from None
        image = root / relative
        if not image.is_file():
            raise CatalogError(f"{split_file}:{line_number}: image not found: {image}")
        product.images.append(image)
    return list(by_id.values())


def _load_image_folder(root: Path, classes_csv: Path) -> list[CatalogProduct]:
    metadata: dict[str, dict[str, str]] = {}
    if classes_csv.is_file():
        with classes_csv.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "sku" not in reader.fieldnames:
                raise CatalogError(f"{classes_csv}: expected a header with sku,name,category")
            metadata = {row["sku"].strip(): row for row in reader if row.get("sku")}
    products = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            continue
        meta = metadata.get(folder.name, {})
        primary = next((p for p in images if p.stem.lower() == "iconic"), images[0])
        products.append(CatalogProduct(
            sku=folder.name,
            name=(meta.get("name") or folder.name).strip(),
            category=(meta.get("category") or "").strip(),
            images=[p for p in images if p != primary],
            primary=primary,
        ))
    return products
