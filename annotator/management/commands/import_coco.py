from django.core.management.base import BaseCommand, CommandError

from annotator.coco import CocoError, load_coco
from annotator.services.coco import import_coco
from annotator.services.locations import get_or_create_company
from annotator.tasks import prelabel_frame


class Command(BaseCommand):
    help = "Import a COCO shelf dataset (images with captured_at/store/camera/shelf); categories become products."

    def add_arguments(self, parser):
        parser.add_argument("path", help="annotations json, or a folder holding annotations.json")
        parser.add_argument("--company", default="default", help="company that owns the data (created if new)")
        parser.add_argument("--without-labels", action="store_true",
                            help="import boxes only: they wait for suggestions instead of carrying labels")
        parser.add_argument("--prelabel", action="store_true", help="queue the new frames for pre-labelling")

    def handle(self, *args, path, company, without_labels, prelabel, **options):
        try:
            dataset = load_coco(path)
        except CocoError as error:
            raise CommandError(str(error)) from None
        report = import_coco(dataset=dataset, company=get_or_create_company(name=company), with_labels=not without_labels)
        if report.missing_captured_at:
            self.stdout.write(
                f"{report.missing_captured_at} images have no captured_at: they are ordered by file name within their camera"
            )
        if prelabel:
            for frame_id in report.frame_ids:
                prelabel_frame.delay(frame_id)
        self.stdout.write(self.style.SUCCESS(
            f"imported {report.frames_created} frames, {report.boxes} boxes, {report.labels} labels, "
            f"{report.products_created} new products; {report.frames_skipped} frames already known"
            + (f"; {len(report.frame_ids)} queued for pre-labelling" if prelabel else "")
        ))
