"""Replay a labelled COCO shelf dataset through the pipelines, in time order, as production would
have seen it, and report accuracy and flicker. Never touches the app's database or search space."""
import json
from dataclasses import replace
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from annotator.coco import CocoError
from annotator.management.options import regex_option
from annotator.management.stage_configs import read_stage_config
from annotator.replays import detect_replay, prepare_replay
from inference.model_set import ModelSet
from inference.pipeline import PIPELINE_VERSIONS, PipelineConfig
from inference.realgram import RealgramConfig
from inference.replay import run_replay
from inference.reranker import Reranker
from inference.tracking import TrackingConfig


class Command(BaseCommand):
    help = "Replay a COCO shelf dataset through the pipelines and report accuracy and flicker."

    def add_arguments(self, parser):
        parser.add_argument("dataset", help="COCO annotations json, or a folder holding annotations.json")
        parser.add_argument("--pipelines", help=f"comma-separated: {', '.join(PIPELINE_VERSIONS)} (default: v0,v1,v2; "
                                                "with --models: v0 and the pipeline the set serves)")
        parser.add_argument("--models", type=Path, help="a model set folder (`learn` writes one): its embedder, "
                                                        "realgram, tracking and reranker, and the stages it serves")
        parser.add_argument("--annotate-every", type=int, default=2, help="per camera, every N-th frame is annotated")
        parser.add_argument("--embedder", help="embedder checkpoint (default: ImageNet EfficientNet-Lite0)")
        parser.add_argument("--realgram-config", type=Path, help="JSON of realgram hyperparameters (v1 and later)")
        parser.add_argument("--tracking-config", type=Path, help="JSON of tracking hyperparameters (v2 and later)")
        parser.add_argument("--reranker", type=Path, help="trained reranker for v3 (train_reranker makes one)")
        parser.add_argument("--report-shelves", help="regex: score only shelves matching it (all frames still replay)")
        parser.add_argument("--knn", type=int, default=10, help="neighbours per crop")
        parser.add_argument("--detector", type=Path,
                            help="YOLO weights: classify detected boxes instead of the ground truth's, and report "
                                 "detection recall and accuracy on the matched boxes")
        parser.add_argument("--json", type=Path, dest="json_out", help="write the results here")

    def handle(self, *args, dataset, pipelines, models, annotate_every, embedder, realgram_config, tracking_config,
               reranker, report_shelves, knn, detector, json_out, **options):
        if models:
            if embedder or realgram_config or tracking_config or reranker:
                raise CommandError("--models brings every component; leave out --embedder, --realgram-config, "
                                   "--tracking-config and --reranker")
            configs, model, embedder = self.model_set(models, pipelines)
        else:
            configs = self.pipeline_configs(pipelines or "v0,v1,v2", realgram_config, tracking_config, knn)
            model = self.reranker(reranker, configs)
        if annotate_every < 1:
            raise CommandError(f"--annotate-every must be at least 1, not {annotate_every}")
        shelf_filter = regex_option(report_shelves, "--report-shelves")
        try:
            prepared = prepare_replay(dataset=dataset, embedder=embedder, cache=settings.VAR_DIR / "cache")
        except CocoError as error:
            raise CommandError(str(error)) from None
        data = prepared.dataset
        if data.missing_captured_at:
            self.stdout.write(f"{data.missing_captured_at} images have no captured_at: "
                              "they follow their camera's timed frames in file name order")
        detected = None
        if detector:
            if not detector.is_file():
                raise CommandError(f"{detector}: detector weights not found")
            detected = detect_replay(prepared=prepared, weights=detector)
        scores = run_replay(prepared.frames, prepared.vectors_of(), configs, dim=prepared.dim,
                            annotate_every=annotate_every,
                            scored=(lambda f: bool(shelf_filter.search(f.shelf))) if shelf_filter else None,
                            detections=(lambda f: detected[f.frame_id]) if detected else None, reranker=model)
        names = {c.id: c.name for c in data.categories.values()}
        self.print_table(scores)
        if json_out:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps({
                "dataset": str(data.path), "embedder": prepared.embedder_name, "annotate_every": annotate_every,
                "report_shelves": report_shelves, "categories": names,
                "reranker": str(reranker) if reranker else None, "models": str(models) if models else None,
                "pipelines": {c.version: c.as_dict() for c in configs},
                "results": {s.pipeline: s.as_dict() for s in scores},
            }, indent=2))
            self.stdout.write(f"wrote {json_out}")

    def pipeline_configs(self, pipelines: str, realgram_config: Path | None, tracking_config: Path | None,
                         knn: int) -> list[PipelineConfig]:
        realgram = read_stage_config(RealgramConfig, realgram_config, "realgram")
        tracking = read_stage_config(TrackingConfig, tracking_config, "tracking")
        try:
            return [PipelineConfig.named(name.strip(), realgram=realgram, tracking=tracking, knn_neighbours=knn)
                    for name in pipelines.split(",") if name.strip()]
        except ValueError as error:
            raise CommandError(f"--pipelines: {error}") from None

    def model_set(self, folder: Path, pipelines: str | None) -> tuple[list[PipelineConfig], Reranker | None, Path | None]:
        """The set's pipelines (its served one and v0, or the named ones with its stage configs), its
        reranker and its embedder (the ONNX export when there is one)."""
        try:
            model_set = ModelSet.load(folder)
            reranker = Reranker.load(model_set.reranker_path) if model_set.reranker_path else None
        except ValueError as error:
            raise CommandError(str(error)) from None
        served = model_set.pipeline_config()
        if pipelines:
            try:
                configs = [PipelineConfig.named(name.strip(), realgram=model_set.realgram, tracking=model_set.tracking,
                                                knn_neighbours=model_set.knn_neighbours, top_k=model_set.top_k)
                           for name in pipelines.split(",") if name.strip()]
            except ValueError as error:
                raise CommandError(f"--pipelines: {error}") from None
            if any(c.rerank for c in configs) and reranker is None:
                raise CommandError(f"{folder}: v3 needs a reranker and this model set has none")
        else:
            configs = [replace(served, version="v0", realgram=None, tracking=None, rerank=False)]
            configs += [served] if served.version != "v0" else []
        return configs, reranker, model_set.onnx_path or model_set.embedder_path

    def reranker(self, path: Path | None, configs: list[PipelineConfig]) -> Reranker | None:
        if any(c.rerank for c in configs) and path is None:
            raise CommandError("v3 needs --reranker PATH: train one with `python manage.py train_reranker`")
        if path is None:
            return None
        try:
            return Reranker.load(path)
        except ValueError as error:
            raise CommandError(str(error)) from None

    def print_table(self, scores) -> None:
        header = f"{'pipeline':8} {'boxes':>6} {'accuracy':>8} {'no-major':>8} {'macro':>6} {'first':>6} {'flicker':>7}"
        detector = scores and scores[0].detection_recall is not None
        self.stdout.write(header + (f" {'recall':>6} {'matched':>7}" if detector else ""))
        for s in scores:
            self.stdout.write(
                f"{s.pipeline:8} {s.boxes:6d} {s.accuracy:8.3f} {s.accuracy_without_majority:8.3f} "
                f"{s.macro_accuracy:6.3f} {s.first_frames_accuracy:6.3f} {s.flicker_rate:7.3f}"
                + (f" {s.detection_recall:6.3f} {s.matched_accuracy:7.3f}" if detector else "")
            )
