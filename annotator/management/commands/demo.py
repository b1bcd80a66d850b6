"""Build the demo: a store of synthetic shelf frames made from real product photos (or a COCO
dataset of your own), part of it annotated, the rest queued for pre-labelling, and a user per role."""
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from annotator.catalog import CatalogError, load_catalog
from annotator.coco import CocoError, load_coco
from annotator.models import Frame
from annotator.services.catalog import import_catalog
from annotator.services.coco import import_coco
from annotator.services.locations import get_or_create_company, set_annotation_interval
from annotator.services.users import create_demo_users
from annotator.tasks import prelabel_frame

SUBSET = Path(settings.BASE_DIR) / "demo" / "grocery-subset"


class Command(BaseCommand):
    help = "Load the demo store (or --data COCO), annotate part of it, queue the rest for pre-labelling."

    def add_arguments(self, parser):
        parser.add_argument("--data", help="a COCO shelf dataset to use instead of the composed demo store")
        parser.add_argument("--company", default="demo")
        parser.add_argument("--annotate-every", type=int, default=3,
                            help="per camera, the first frame and every N-th after it carry their labels")
        parser.add_argument("--label-every-hours", type=int, default=12,
                            help="the stores' annotation schedule: one frame per camera per this many hours "
                                 "goes to the annotators (the demo's frames are hours apart)")

    def handle(self, *args, data, company, annotate_every, label_every_hours, **options):
        owner = get_or_create_company(name=company)
        if data:
            source = Path(data)
        else:
            from demo.compose import compose

            source = settings.VAR_DIR / "demo"
            composed = compose(source)
            self.stdout.write(f"composed {len(composed.coco['images'])} demo frames in {source}")
            try:
                catalog = load_catalog(SUBSET / "catalog", classes=SUBSET / "classes.csv")
            except CatalogError as error:
                raise CommandError(str(error)) from None
            report = import_catalog(company=owner, products=catalog)
            self.stdout.write(f"catalogue: {report.products_created} products, {report.images_added} reference images")
        try:
            dataset = load_coco(source)
        except CocoError as error:
            raise CommandError(str(error)) from None
        annotated, incoming = dataset.split_by_schedule(annotate_every)
        labelled = import_coco(dataset=annotated, company=owner, with_labels=True)
        waiting = import_coco(dataset=incoming, company=owner, with_labels=False)
        self.stdout.write(
            f"annotated frames: {labelled.frames_created} new ({labelled.labels} labels); "
            f"frames to pre-label: {waiting.frames_created} new"
        )
        set_annotation_interval(company=owner, hours=label_every_hours)
        pending = list(
            Frame.objects.filter(company=owner, status__in=[Frame.Status.QUEUED, Frame.Status.FAILED])
            .order_by("camera_id", "captured_at", "pk").values_list("pk", flat=True)
        )
        for frame_id in pending:
            prelabel_frame.delay(frame_id)
        self.stdout.write(f"queued {len(pending)} frames for pre-labelling (the worker picks them up)")
        call_command("collectstatic", interactive=False, verbosity=0)
        self.stdout.write(self.style.SUCCESS("demo users (username password):"))
        for username, password in create_demo_users(company=owner).items():
            self.stdout.write(f"  {username:10s} {password}")
