"""One round of the learning loop: train a candidate model set on labels, judge it against the
promoted one on labels it never saw, and write it as a folder.

1. The embedder is trained with ArcFace on the crops of the ``train`` frames (P x K batches),
   warm-started from the promoted embedder when it is a trained one, inside a time box.
2. Realgram is searched with Optuna, and the reranker trained, on replays of the ``train`` frames
   embedded by the candidate: each stage is fitted to the embedder it follows.
3. The gate replays every frame in time order, each predicted from what was annotated before it,
   and scores the ``gate`` frames only, for the candidate and the promoted set side by side. A stage
   of the candidate stays on only where it beats the stage before it on every column (accuracy, on
   the products that are not the catch-all, macro, first frame of a camera, flicker); the candidate
   is promoted only if it beats the promoted set by ``margin`` on accuracy and loses on none of the
   others by more than ``tolerance``.
4. The final score is calibrated on the gate replay (isotonic: a score of 0.9 means 90% of such
   suggestions were right); its error is measured cross-fitted, on frames it was not fitted on.

Nothing here knows Django: frames, image paths and the promoted set come in as plain values.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np

from inference.calibration import cross_fitted_error, expected_calibration_error, fit_isotonic
from inference.candidates import Candidate
from inference.config import Config
from inference.embedder import EmbedderConfig
from inference.embedder_training import TrainingConfig, TrainingSample, half_precision_copy, train_embedder
from inference.images import crop_boxes, open_image
from inference.model_set import ModelSet, Stages
from inference.pipeline import PipelineConfig
from inference.realgram_tuning import search_realgram
from inference.replay import PipelineScore, ReplayFrame, cached_vectors, collect_reranker_rows, run_replay
from inference.reranker import DEFAULT_BALANCE, Reranker, fit_reranker
from inference.tracking import TrackingConfig

COLUMNS = ("accuracy", "accuracy_without_majority", "macro_accuracy", "first_frames_accuracy")
# Share of the budget given to training; the rest covers embedding the crops, tuning and the replays.
TRAINING_SHARE = 0.75
TUNING_SHARE = 0.08


@dataclass(frozen=True)
class LearningConfig(Config):
    """What a round does.

    budget_minutes: the round's time box; training takes ``TRAINING_SHARE`` of it, realgram's
        search at most ``TUNING_SHARE``, embedding and replays the rest.
    backbone, embedding_dim, input_size, init, p, k, epochs, lr, train_last_blocks, max_steps, device:
        the embedder's training (``TrainingConfig``); p is capped by the number of classes.
    realgram_trials: Optuna trials for realgram (also stopped by its share of the budget).
    margin: accuracy the candidate must gain over the promoted set to be promoted.
    tolerance: what it may lose on the other columns (0: nothing).
    annotate_every: the replays' annotation schedule (every N-th frame of a camera is labelled).
    reranker_balance: see ``inference.reranker.class_balance_weights``.
    """

    budget_minutes: float = 25.0
    backbone: str = "tf_efficientnet_lite0"
    embedding_dim: int | None = 512
    input_size: int = 192
    init: str = "imagenet-lite0"
    p: int = 16
    k: int = 8
    epochs: int = 3
    lr: float = 3e-4
    train_last_blocks: int | None = None
    max_steps: int | None = None
    device: str = "auto"
    realgram_trials: int = 30
    margin: float = 0.005
    tolerance: float = 0.0
    annotate_every: int = 2
    reranker_balance: float = DEFAULT_BALANCE
    knn_neighbours: int = 10
    top_k: int = 10
    seed: int = 0

    def training(self, classes: int, warm_start: Path | None) -> TrainingConfig:
        return TrainingConfig(
            embedder=EmbedderConfig(backbone=self.backbone, embedding_dim=self.embedding_dim, input_size=self.input_size),
            init="none" if warm_start else self.init, init_checkpoint=str(warm_start) if warm_start else None,
            epochs=self.epochs, lr=self.lr, train_last_blocks=self.train_last_blocks, p=max(2, min(self.p, classes)),
            k=self.k, max_steps=self.max_steps, max_seconds=self.budget_minutes * 60 * TRAINING_SHARE,
            device=self.device, seed=self.seed,
        )


@dataclass
class RoundData:
    """The company's labelled frames (truth = current labels), where their images are, and which
    frames train and which gate. ``cut_off``: the time split's moment, when there is one."""

    frames: list[ReplayFrame]
    image_paths: dict[int, Path]
    train: set[int]
    gate: set[int]
    cut_off: datetime | None = None
    description: str = ""

    def training_samples(self) -> list[TrainingSample]:
        return [TrainingSample(self.image_paths[frame.frame_id], tuple(map(float, box)), int(product))
                for frame in self.frames if frame.frame_id in self.train
                for box, product in zip(frame.boxes, frame.truth)]


@dataclass
class Served:
    """A model set as it serves: its loaded embedder (anything with ``embed``, ``name`` and ``dim``)
    and reranker (when its reranker stage is on)."""

    model_set: ModelSet
    embedder: object
    reranker: Reranker | None = None


@dataclass
class RoundResult:
    folder: Path
    promoted: bool
    reasons: list[str]
    stages: Stages
    report: dict = field(default_factory=dict)


def run_round(data: RoundData, *, promoted: Served, out: Path, config: LearningConfig, command: str = "",
              cache: Path | None = None, log: Callable[[str], None] = print,
              progress: Callable[[str, float], None] | None = None) -> RoundResult:
    """Train, fit, gate and write the candidate model set into ``out`` (a new folder)."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    report_progress = progress or (lambda stage, fraction: None)
    if not data.train or not data.gate:
        raise ValueError(f"a round needs frames to train on and frames to gate on; got {len(data.train)} and "
                         f"{len(data.gate)} labelled frames")
    samples = data.training_samples()
    classes = len({sample.label for sample in samples})
    if classes < 2:
        raise ValueError(f"the training frames hold {classes} product; ArcFace needs at least two")
    out.mkdir(parents=True, exist_ok=False)

    # 1. The embedder.
    report_progress("training", 0.0)
    warm_start = warm_start_checkpoint(promoted.model_set, config)
    training = config.training(classes, warm_start)
    log(f"round: {len(data.train)} training frames ({len(samples)} crops, {classes} products), "
        f"{len(data.gate)} gate frames; warm start: {warm_start or training.init}")
    full = out.parent / f"{out.name}.pt"  # its stem names the embedder (and so its collection)
    trained = train_embedder(samples, training, full, log=log,
                             on_step=lambda step, steps: report_progress("training", 0.7 * step / steps))
    half_precision_copy(full, out / "embedder.pt")
    full.unlink()
    timings["training_s"] = trained.seconds
    candidate_embedder = export_for_serving(out / "embedder.pt", out / "embedder.onnx")

    # 2. Every frame's crops, as each embedder sees them.
    report_progress("embedding", 0.7)
    tick = time.perf_counter()
    candidate_vectors = embed_frames(data, candidate_embedder, cache=None)
    promoted_vectors = embed_frames(data, promoted.embedder, cache=cache)
    timings["embedding_s"] = time.perf_counter() - tick
    dim = candidate_embedder.dim
    train_frames = [f for f in data.frames if f.frame_id in data.train]

    # 3. Realgram fitted to the candidate, on the training frames only.
    report_progress("realgram", 0.8)
    tick = time.perf_counter()
    realgram, _, trials = search_realgram(
        train_frames, lambda f: candidate_vectors[f.frame_id], dim=dim, trials=config.realgram_trials,
        annotate_every=config.annotate_every, knn_neighbours=config.knn_neighbours, objective="mean",
        seed=config.seed, timeout_seconds=config.budget_minutes * 60 * TUNING_SHARE)
    timings["realgram_s"] = time.perf_counter() - tick
    tracking = TrackingConfig()
    log(f"realgram: best of {trials} trials: " + ", ".join(f"{k}={v:.3g}" for k, v in asdict(realgram).items()))

    # 4. Gate, stage by stage.
    report_progress("gate", 0.85)
    tick = time.perf_counter()
    gated = lambda frame: frame.frame_id in data.gate  # noqa: E731
    base = PipelineConfig(version="v0", knn_neighbours=config.knn_neighbours, top_k=config.top_k)
    trials_configs = [base, replace(base, version="v1", realgram=realgram),
                      replace(base, version="v2", realgram=realgram, tracking=tracking),
                      replace(base, version="v2", tracking=tracking)]
    scores = run_replay(data.frames, lambda f: candidate_vectors[f.frame_id], trials_configs, dim=dim,
                        annotate_every=config.annotate_every, scored=gated)
    reasons: list[str] = []
    stages, kept = choose_stages(scores, config.tolerance, reasons)
    kept_config = trials_configs[kept]

    reranker, reranker_note = None, ""
    try:
        rows = collect_reranker_rows(train_frames, lambda f: candidate_vectors[f.frame_id],
                                     replace(kept_config, version="v2"), dim=dim, train=lambda f: True,
                                     annotate_every=config.annotate_every)
        reranker = fit_reranker(rows, balance=config.reranker_balance)
    except ValueError as error:
        reranker_note = f"reranker not trained: {error}"
        reasons.append(reranker_note)
    final_index = 0
    final_configs = [kept_config]
    if reranker is not None:
        final_configs.append(replace(kept_config, version="v3", rerank=True))
    top1 = Top1Collector(gated, len(final_configs))
    final_scores = run_replay(data.frames, lambda f: candidate_vectors[f.frame_id], final_configs, dim=dim,
                              annotate_every=config.annotate_every, scored=gated, reranker=reranker,
                              on_ranked=top1)
    if reranker is not None:
        if beats(final_scores[1], final_scores[0], 0.0, config.tolerance):
            stages, final_index = replace(stages, reranker=True), 1
            reranker.save(out / "reranker.json")
        else:
            reasons.append("reranker switched off: " + shortfall(final_scores[1], final_scores[0], 0.0, config.tolerance))
            reranker.save(out / "reranker.json")

    served = promoted.model_set
    promoted_config = served.pipeline_config()
    promoted_reranker = promoted.reranker
    promoted_score = run_replay(data.frames, lambda f: promoted_vectors[f.frame_id], [promoted_config],
                                dim=promoted.embedder.dim, annotate_every=config.annotate_every, scored=gated,
                                reranker=promoted_reranker)[0]
    timings["gate_s"] = time.perf_counter() - tick
    candidate_score = final_scores[final_index]
    promote = beats(candidate_score, promoted_score, config.margin, config.tolerance)
    verdict = ("promoted: " if promote else "not promoted: ") + (
        f"accuracy {candidate_score.accuracy:.4f} vs {promoted_score.accuracy:.4f} (margin {config.margin})"
        if promote else shortfall(candidate_score, promoted_score, config.margin, config.tolerance))
    reasons.insert(0, verdict)
    log(verdict)

    # 5. Calibration of the final score, on the gate replay.
    report_progress("calibration", 0.95)
    scores_final, correct_final, groups_final = top1.arrays(final_index)
    calibrator = fit_isotonic(scores_final, correct_final)
    calibrator.save(out / "calibrator.json")
    calibration = {
        "samples": calibrator.samples,
        "error_in_sample": expected_calibration_error(calibrator.probability(scores_final), correct_final),
        "error_cross_fitted": cross_fitted_error(scores_final, correct_final, groups_final),
    }

    figures = {
        "candidate": {"v0": scores[0].as_dict(), "v1": scores[1].as_dict(), "v2": scores[2].as_dict(),
                      "v0+tracking": scores[3].as_dict(), **({"v3": final_scores[1].as_dict()} if reranker else {}),
                      "served": candidate_score.as_dict()},
        "promoted": {"name": served.name, "version": promoted_config.version, "served": promoted_score.as_dict()},
    }
    timings["total_s"] = time.perf_counter() - started
    model_set = ModelSet(
        folder=out, name=out.name, embedder_name=candidate_embedder.name, stages=stages, realgram=realgram,
        tracking=tracking, knn_neighbours=config.knn_neighbours, top_k=config.top_k, has_embedder=True,
        has_reranker=reranker is not None, has_calibrator=True,
        trained_until=latest_capture(train_frames),
        figures={"promote": promote, "reasons": reasons, "gate": figures, "calibration": calibration,
                 "timings": timings, "training": {"samples": trained.samples, "classes": trained.classes,
                                                  "steps": trained.steps, "seconds": trained.seconds,
                                                  "loss_history": trained.loss_history,
                                                  "warm_start": str(warm_start) if warm_start else None}},
    )
    model_set.save()
    (out / "MODEL_CARD.md").write_text(model_card(model_set, data, config, command))
    report_progress("done", 1.0)
    return RoundResult(out, promote, reasons, stages, model_set.figures)


def latest_capture(frames: Sequence[ReplayFrame]) -> str | None:
    moments = [frame.captured_at for frame in frames if frame.captured_at is not None]
    return max(moments).isoformat() if moments else None


def warm_start_checkpoint(model_set: ModelSet, config: LearningConfig) -> Path | None:
    """The promoted embedder, when it is a trained one this round's network can start from."""
    import torch

    path = model_set.embedder_path
    if path is None or not path.is_file():
        return None
    stored = torch.load(path, map_location="cpu", weights_only=False)["config"]
    wanted = {"backbone": config.backbone, "embedding_dim": config.embedding_dim, "input_size": config.input_size}
    return path if all(stored.get(key) == value for key, value in wanted.items()) else None


def export_for_serving(checkpoint: Path, onnx_path: Path):
    """The ONNX export of a checkpoint, loaded: 2-2.8x torch's crops/s on CPU for the replays."""
    from inference.embedder import load_embedder
    from inference.onnx_embedder import export_onnx, load_onnx_embedder

    export_onnx(load_embedder(checkpoint), onnx_path)
    return load_onnx_embedder(onnx_path)


def embed_frames(data: RoundData, embedder, *, cache: Path | None) -> dict[int, np.ndarray]:
    """Every frame's crop embeddings (one row per box), cached per embedder and boxes when ``cache``."""
    digest = hashlib.sha256()
    for frame in data.frames:
        digest.update(str(frame.frame_id).encode())
        digest.update(np.ascontiguousarray(frame.boxes, np.float64).tobytes())

    def embed(frame: ReplayFrame) -> np.ndarray:
        image = open_image(data.image_paths[frame.frame_id])
        return embedder.embed(crop_boxes(image, [tuple(b) for b in frame.boxes]))

    return cached_vectors(data.frames, embed, cache, key=f"round|{embedder.name}|{digest.hexdigest()}")


class Top1Collector:
    """Per pipeline, the top-1 score of every scored box and whether it was right (for calibration)."""

    def __init__(self, scored: Callable[[ReplayFrame], bool], pipelines: int):
        self.scored = scored
        self.rows: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in range(pipelines)]

    def __call__(self, frame: ReplayFrame, _moment: float, index: int, ranked: list[list[Candidate]]) -> None:
        if not self.scored(frame):
            return
        score = np.array([c[0].score if c else 0.0 for c in ranked], np.float64)
        right = np.array([bool(c) and c[0].product_id == t for c, t in zip(ranked, frame.truth)], np.float64)
        self.rows[index].append((score, right, np.full(len(score), frame.frame_id)))

    def arrays(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = self.rows[index]
        if not rows:
            return np.zeros(0), np.zeros(0), np.zeros(0, np.int64)
        return tuple(np.concatenate(part) for part in zip(*rows))  # type: ignore[return-value]


def beats(new: PipelineScore, old: PipelineScore, margin: float, tolerance: float) -> bool:
    """``new`` gains ``margin`` on accuracy over ``old`` and loses no more than ``tolerance`` on the
    other columns (flicker may not rise by more than it either)."""
    return not shortfall(new, old, margin, tolerance)


def shortfall(new: PipelineScore, old: PipelineScore, margin: float, tolerance: float) -> str:
    """What keeps ``new`` from beating ``old`` ("" when nothing does)."""
    misses = []
    if new.accuracy < old.accuracy + margin:
        misses.append(f"accuracy {new.accuracy:.4f} < {old.accuracy:.4f} + {margin}")
    for column in COLUMNS[1:]:
        if getattr(new, column) < getattr(old, column) - tolerance:
            misses.append(f"{column} {getattr(new, column):.4f} < {getattr(old, column):.4f}")
    if new.flicker_rate > old.flicker_rate + tolerance:
        misses.append(f"flicker_rate {new.flicker_rate:.4f} > {old.flicker_rate:.4f}")
    return "; ".join(misses)


def choose_stages(scores: Sequence[PipelineScore], tolerance: float, reasons: list[str]) -> tuple[Stages, int]:
    """From the gate scores of [v0, v0+realgram, v0+realgram+tracking, v0+tracking], keep each stage
    only where it beats the stage before it. Returns the stages and the index of the kept pipeline."""
    v0, v1, v2, tracked = scores
    if beats(v1, v0, 0.0, tolerance):
        realgram, kept = True, 1
    else:
        realgram, kept = False, 0
        reasons.append("realgram switched off: " + shortfall(v1, v0, 0.0, tolerance))
    with_tracking, index = (v2, 2) if realgram else (tracked, 3)
    if beats(with_tracking, scores[kept], 0.0, tolerance):
        return Stages(realgram=realgram, tracking=True, reranker=False), index
    reasons.append("tracking switched off: " + shortfall(with_tracking, scores[kept], 0.0, tolerance))
    return Stages(realgram=realgram, tracking=False, reranker=False), kept


def model_card(model_set: ModelSet, data: RoundData, config: LearningConfig, command: str) -> str:
    figures = model_set.figures
    gate = figures["gate"]
    rows = [("promoted: " + gate["promoted"]["name"] + f" ({gate['promoted']['version']})", gate["promoted"]["served"])]
    rows += [(f"candidate {name}", score) for name, score in gate["candidate"].items() if name != "served"]
    rows.append((f"candidate as served ({model_set.stages.version})", gate["candidate"]["served"]))
    table = ["| pipeline | boxes | accuracy | not catch-all | macro | first frame | flicker |",
             "|---|---|---|---|---|---|---|"]
    table += [f"| {name} | {s['boxes']} | {s['accuracy']:.3f} | {s['accuracy_without_majority']:.3f} | "
              f"{s['macro_accuracy']:.3f} | {s['first_frames_accuracy']:.3f} | {s['flicker_rate']:.3f} |"
              for name, s in rows]
    training = figures["training"]
    return "\n".join([
        f"# Model set {model_set.name}",
        "",
        f"Written by a learning round: {'promoted' if figures['promote'] else 'not promoted'}.",
        "",
        "## Data",
        f"{data.description}",
        f"{len(data.train)} training frames ({training['samples']} crops, {training['classes']} products), "
        f"{len(data.gate)} gate frames" + (f"; cut-off {data.cut_off.isoformat()}" if data.cut_off else "") + ".",
        "",
        "## Command",
        f"`{command}`" if command else "(called from code)",
        "",
        "## Training",
        f"{config.backbone}, {config.input_size} px, {config.embedding_dim}-d head, ArcFace, P x K batches; "
        f"warm start {training['warm_start'] or config.init}; {training['steps']} steps in {training['seconds']:.0f} s "
        f"(budget {config.budget_minutes} min); mean loss per epoch "
        + ", ".join(f"{loss:.2f}" for loss in training["loss_history"]) + ".",
        "",
        "## Gate (frames after the cut-off / held out, replayed in time order)",
        *table,
        "",
        "Stages on: " + (", ".join(name for name, on in asdict(model_set.stages).items() if on) or "kNN only") + ".",
        *[f"- {reason}" for reason in figures["reasons"]],
        "",
        "## Calibration",
        f"Isotonic on {figures['calibration']['samples']} gate suggestions; expected calibration error "
        f"{figures['calibration']['error_cross_fitted']:.3f} cross-fitted (fitted on half the frames, measured on "
        f"the other half), {figures['calibration']['error_in_sample']:.3f} in sample.",
        "",
        "## Settings",
        "```json",
        json.dumps(asdict(config), indent=2),
        "```",
        "",
    ])
