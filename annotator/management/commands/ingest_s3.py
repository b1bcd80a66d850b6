from botocore.exceptions import BotoCoreError, ClientError
from django.core.management.base import BaseCommand, CommandError

from annotator import engines
from annotator.services.ingest import ingest_s3
from annotator.services.prelabel_queue import queue_prelabelling


class Command(BaseCommand):
    help = "Register new camera frames from S3 (<company>/<store>/<camera>/<YYYYmmddTHHMMSS>.jpg) and queue them."

    def add_arguments(self, parser):
        parser.add_argument("--bucket", required=True)
        parser.add_argument("--prefix", default="")
        parser.add_argument("--endpoint-url", default=None, help="S3-compatible endpoint (default: settings)")
        parser.add_argument("--no-queue", action="store_true", help="register only; do not queue pre-labelling")

    def handle(self, *args, bucket, prefix, endpoint_url, no_queue, **options):
        try:
            report = ingest_s3(
                client=engines.s3_client(endpoint_url), bucket=bucket, prefix=prefix,
                queue=None if no_queue else (lambda frame_id: queue_prelabelling(frame_id=frame_id)),
            )
        except (BotoCoreError, ClientError) as error:
            raise CommandError(f"s3://{bucket}/{prefix}: {error}") from None
        for key in report.ignored_keys:
            self.stderr.write(f"s3://{bucket}/{key}: ignored, not <company>/<store>/<camera>/<YYYYmmddTHHMMSS>.jpg")
        for key in report.unreadable:
            self.stderr.write(f"s3://{bucket}/{key}: not a readable image, skipped")
        for key in report.missing:
            self.stderr.write(f"s3://{bucket}/{key}: listed but gone before its download; tried again next time")
        self.stdout.write(self.style.SUCCESS(
            f"{len(report.registered)} new frames registered, {report.already_known} already known"
        ))
