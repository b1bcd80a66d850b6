"""Replay a labelled COCO shelf dataset through the pipelines, in time order, as production would
have seen it, and report accuracy and flicker. Never touches the app's database or search space."""
import json
import re
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from annotator.coco import CocoError, load_coco
from inference.embedder import load_embedder
from inference.images import ImageError, crop_boxes, open_image
from inference.pipeline import PIPELINE_VERSIONS, PipelineConfig
from inference.realgram import RealgramConfig
from inference.replay import ReplayFrame, cached_vectors, run_replay


class Command(BaseCommand):
    help = "Replay a COCO shelf dataset through the pipelines and report accuracy and flicker."

    def add_arguments(self, parser):
        parser.add_argument("dataset", help="COCO annotations json, or a folder holding annotations.json")
        parser.add_argument("--pipelines", default="v0,v1", help=f"comma-separated: {', '.join(PIPELINE_VERSIONS)}")
        parser.add_argument("--annotate-every", type=int, default=2, help="per camera, every N-th frame is annotated")
        parser.add_argument("--embedder", help="embedder checkpoint (default: ImageNet EfficientNet-Lite0)")
        parser.add_argument("--realgram-config", type=Path, help="JSON of realgram hyperparameters for v1")
        parser.add_argument("--report-shelves", help="regex: score only shelves matching it (all frames still replay)")
        parser.add_argument("--knn", type=int, default=10, help="neighbours per crop")
        parser.add_argument("--json", type=Path, dest="json_out", help="write the results here")

    def handle(self, *args, dataset, pipelines, annotate_every, embedder, realgram_config, report_shelves, knn,
               json_out, **options):
        configs = self.pipeline_configs(pipelines, realgram_config, knn)
        if annotate_every < 1:
            raise CommandError(f"--annotate-every must be at least 1, not {annotate_every}")
        shelf_filter = self.shelf_filter(report_shelves)
        try:
            data = load_coco(dataset)
        except CocoError as error:
            raise CommandError(str(error)) from None
        unlabelled = [b.id for image in data.images for b in image.boxes if b.category_id is None]
        if unlabelled:
            raise CommandError(f"{data.path}: annotation {unlabelled[0]} has no category; a replay needs ground truth")
        if data.missing_captured_at:
            self.stdout.write(f"{data.missing_captured_at} images have no captured_at: "
                              "they follow their camera's timed frames in file name order")
        frames = [
            ReplayFrame(
                frame_id=image.id, file_name=image.file_name, store=image.store, camera=image.camera, shelf=image.shelf,
                captured_at=image.captured_at, width=image.width, height=image.height,
                boxes=np.array([b.bbox for b in image.boxes], np.float64).reshape(-1, 4),
                truth=np.array([b.category_id for b in image.boxes], np.int64),
            )
            for image in data.images
        ]
        paths = {image.id: image.path for image in data.images}
        model = load_embedder(embedder or None)

        def embed(frame: ReplayFrame) -> np.ndarray:
            try:
                image = open_image(paths[frame.frame_id])
            except ImageError as error:
                raise CommandError(f"{paths[frame.frame_id]}: {error}") from None
            return model.embed(crop_boxes(image, [tuple(b) for b in frame.boxes]))

        vectors = cached_vectors(frames, embed, settings.VAR_DIR / "cache",
                                 key=f"{model.name}|{data.path.resolve()}|{data.path.stat().st_mtime_ns}")
        scores = run_replay(frames, lambda f: vectors[f.frame_id], configs, dim=model.dim,
                            annotate_every=annotate_every,
                            scored=(lambda f: bool(shelf_filter.search(f.shelf))) if shelf_filter else None)
        names = {c.id: c.name for c in data.categories.values()}
        self.print_table(scores)
        if json_out:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps({
                "dataset": str(data.path), "embedder": model.name, "annotate_every": annotate_every,
                "report_shelves": report_shelves, "categories": names,
                "pipelines": {c.version: c.as_dict() for c in configs},
                "results": {s.pipeline: s.as_dict() for s in scores},
            }, indent=2))
            self.stdout.write(f"wrote {json_out}")

    def pipeline_configs(self, pipelines: str, realgram_config: Path | None, knn: int) -> list[PipelineConfig]:
        realgram = None
        if realgram_config:
            try:
                realgram = RealgramConfig.from_dict(json.loads(realgram_config.read_text()))
            except (OSError, ValueError, TypeError) as error:
                raise CommandError(f"{realgram_config}: not a realgram config ({error})") from None
        try:
            return [PipelineConfig.named(name.strip(), realgram=realgram, knn_neighbours=knn)
                    for name in pipelines.split(",") if name.strip()]
        except ValueError as error:
            raise CommandError(f"--pipelines: {error}") from None

    def shelf_filter(self, pattern: str | None):
        if not pattern:
            return None
        try:
            return re.compile(pattern)
        except re.error as error:
            raise CommandError(f"--report-shelves: bad regex {pattern!r} ({error})") from None

    def print_table(self, scores) -> None:
        header = f"{'pipeline':8} {'boxes':>6} {'accuracy':>8} {'no-major':>8} {'macro':>6} {'first':>6} {'flicker':>7}"
        self.stdout.write(header)
        for s in scores:
            self.stdout.write(
                f"{s.pipeline:8} {s.boxes:6d} {s.accuracy:8.3f} {s.accuracy_without_majority:8.3f} "
                f"{s.macro_accuracy:6.3f} {s.first_frames_accuracy:6.3f} {s.flicker_rate:7.3f}"
            )
