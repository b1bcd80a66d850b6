from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotator.catalog import CatalogError, load_catalog
from annotator.services.catalog import import_catalog
from annotator.services.locations import get_or_create_company


class Command(BaseCommand):
    help = "Import products with reference images: GroceryStoreDataset layout or an ImageFolder tree."

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--company", default="default")
        parser.add_argument("--split", default="train", help="GroceryStoreDataset split whose images become references")
        parser.add_argument("--classes", type=Path, help="ImageFolder: a classes.csv (sku,name,category) elsewhere")

    def handle(self, *args, path, company, split, classes, **options):
        try:
            products = load_catalog(path, split=split, classes=classes)
        except CatalogError as error:
            raise CommandError(str(error)) from None
        report = import_catalog(company=get_or_create_company(name=company), products=products)
        self.stdout.write(self.style.SUCCESS(
            f"{report.products_created} products created, {report.products_updated} updated, "
            f"{report.images_added} reference images added"
        ))
