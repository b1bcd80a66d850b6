from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotator.models import Company
from annotator.services.coco import export_coco


class Command(BaseCommand):
    help = "Export a company's frames and current labels as a COCO shelf dataset (images copied beside it)."

    def add_arguments(self, parser):
        parser.add_argument("path", help="json file to write; images go to images/ beside it")
        parser.add_argument("--company", default="default")
        parser.add_argument("--no-images", action="store_true", help="write the json only")

    def handle(self, *args, path, company, no_images, **options):
        try:
            owner = Company.objects.get(name=company)
        except Company.DoesNotExist:
            raise CommandError(f"{path}: unknown company {company!r}") from None
        target = Path(path)
        if target.is_dir():
            target = target / "annotations.json"
        data = export_coco(company=owner, path=target, copy_images=not no_images)
        self.stdout.write(self.style.SUCCESS(
            f"wrote {target}: {len(data['images'])} images, {len(data['annotations'])} annotations, "
            f"{len(data['categories'])} categories"
        ))
