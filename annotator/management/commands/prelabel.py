from django.core.management.base import BaseCommand

from annotator.models import Frame
from annotator.tasks import prelabel_frame


class Command(BaseCommand):
    help = "Queue frames for pre-labelling (default: every queued or failed frame)."

    def add_arguments(self, parser):
        parser.add_argument("frame_ids", nargs="*", type=int)
        parser.add_argument("--status", nargs="+", default=[Frame.Status.QUEUED, Frame.Status.FAILED])

    def handle(self, *args, frame_ids, status, **options):
        frames = Frame.objects.filter(pk__in=frame_ids) if frame_ids else Frame.objects.filter(status__in=status)
        ids = list(frames.order_by("camera_id", "captured_at", "pk").values_list("pk", flat=True))
        for frame_id in ids:
            prelabel_frame.delay(frame_id)
        self.stdout.write(self.style.SUCCESS(f"queued {len(ids)} frames for pre-labelling"))
