from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction

from annotator.catalog import CatalogProduct
from annotator.models import Category, Company, Product, ProductImage
from annotator.services.frames import checksum_of


@dataclass
class CatalogReport:
    products_created: int = 0
    products_updated: int = 0
    images_added: int = 0


def import_catalog(*, company: Company, products: Sequence[CatalogProduct]) -> CatalogReport:
    """Create or update the company's products (by sku) and add their reference images, in one
    transaction; images already attached (same bytes) are not added twice."""
    report = CatalogReport()
    stored: list[ProductImage] = []
    try:
        with transaction.atomic():
            for entry in products:
                category = None
                if entry.category:
                    category, _ = Category.objects.get_or_create(company=company, name=entry.category)
                product, created = Product.objects.update_or_create(
                    company=company, sku=entry.sku, defaults={"name": entry.name, "category": category}
                )
                report.products_created += created
                report.products_updated += not created
                known = set(product.images.values_list("checksum", flat=True))
                images = ([(entry.primary, True)] if entry.primary else []) + [(p, False) for p in entry.images]
                for path, is_primary in images:
                    data = path.read_bytes()
                    checksum = checksum_of(data)
                    if checksum in known:
                        continue
                    known.add(checksum)
                    image = ProductImage(product=product, checksum=checksum, is_primary=is_primary)
                    image.image.save(path.name, ContentFile(data), save=False)
                    stored.append(image)
                    image.save()
                    report.images_added += 1
    except BaseException:
        for image in stored:
            image.image.delete(save=False)
        raise
    return report


class ProductError(ValueError):
    """A product that cannot be created as asked; the message says why (for a 400)."""


def create_product(*, company: Company, name: str, sku: str, category: str | None = None) -> Product:
    """A new product of the company (an annotator met one the catalogue lacks), in its category by name
    (created when the company has none of that name). Raises ProductError when the SKU is taken, also
    when another request takes it at the same moment (the unique constraint decides)."""
    name, sku = name.strip(), sku.strip()
    if not name or not sku:
        raise ProductError("a product needs a name and a SKU")
    taken = _product_with_sku(company=company, sku=sku)
    if taken is not None:
        raise ProductError(f"SKU {sku!r} is already the product {taken.name!r}")
    try:
        with transaction.atomic():
            found = None
            if category and category.strip():
                found, _ = Category.objects.get_or_create(company=company, name=category.strip())
            return Product.objects.create(company=company, sku=sku, name=name, category=found)
    except IntegrityError:
        raise ProductError(f"SKU {sku!r} is already one of the company's products") from None


def _product_with_sku(*, company: Company, sku: str) -> Product | None:
    return Product.objects.filter(company=company, sku=sku).first()
