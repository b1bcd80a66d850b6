"""A model set: every model and hyperparameter a company's pipeline runs with, in one folder.

A learning round writes one (``inference.learning``); the app serves a company from its promoted
set, and ``evaluate --models`` replays a dataset with one. The folder holds::

    model_set.json   the manifest: names, stages switched on, figures of the round
    embedder.pt      the embedder checkpoint (float16 weights; absent for the base ImageNet set)
    embedder.onnx    its ONNX export (and embedder.json, the export's sidecar)
    realgram.json    realgram hyperparameters
    tracking.json    tracking hyperparameters
    reranker.json    the v3 model, when the reranker stage is on
    calibrator.json  score -> probability of being right
    MODEL_CARD.md    data, cut-off, command and figures, for people

A stage that did not beat the one before it on the round's gate replay is switched off in
``stages``; its files may still be there (the card says why it is off).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from inference.calibration import Calibrator
from inference.config import Config
from inference.pipeline import PipelineConfig
from inference.realgram import RealgramConfig
from inference.tracking import TrackingConfig

FORMAT = "shelf-annotator/model-set/1"
MANIFEST = "model_set.json"
STAGES = ("realgram", "tracking", "reranker")


class ModelSetError(ValueError):
    """A folder that is not a readable model set; the message names the folder and the problem."""


@dataclass(frozen=True)
class Stages(Config):
    """Which stages after kNN run: each one only where it beat the stage before it."""

    realgram: bool = True
    tracking: bool = True
    reranker: bool = False

    @property
    def version(self) -> str:
        """The pipeline name predictions are recorded under: the last stage that runs."""
        if self.reranker:
            return "v3"
        if self.tracking:
            return "v2"
        return "v1" if self.realgram else "v0"


@dataclass
class ModelSet:
    """A model set as loaded from (or about to be written to) its folder."""

    folder: Path
    name: str
    embedder_name: str
    stages: Stages = field(default_factory=Stages)
    realgram: RealgramConfig = field(default_factory=RealgramConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    knn_neighbours: int = 10
    top_k: int = 10
    has_embedder: bool = True  # False: the base set, served with the ImageNet embedder
    has_reranker: bool = False
    has_calibrator: bool = False
    trained_until: str | None = None  # ISO time of the latest label the set learned from
    figures: dict = field(default_factory=dict)

    @property
    def embedder_path(self) -> Path | None:
        return self.folder / "embedder.pt" if self.has_embedder else None

    @property
    def onnx_path(self) -> Path | None:
        path = self.folder / "embedder.onnx"
        return path if self.has_embedder and path.is_file() else None

    @property
    def reranker_path(self) -> Path | None:
        return self.folder / "reranker.json" if self.has_reranker else None

    @property
    def calibrator_path(self) -> Path | None:
        return self.folder / "calibrator.json" if self.has_calibrator else None

    def pipeline_config(self) -> PipelineConfig:
        """The pipeline this set serves: kNN, then each stage that is switched on."""
        return PipelineConfig(
            version=self.stages.version, knn_neighbours=self.knn_neighbours, top_k=self.top_k,
            realgram=self.realgram if self.stages.realgram else None,
            tracking=self.tracking if self.stages.tracking else None,
            rerank=self.stages.reranker and self.has_reranker,
        )

    def load_calibrator(self) -> Calibrator | None:
        return Calibrator.load(self.calibrator_path) if self.calibrator_path else None

    def load_reranker(self):
        from inference.reranker import Reranker

        return Reranker.load(self.reranker_path) if self.reranker_path and self.stages.reranker else None

    def manifest(self) -> dict:
        return {
            "format": FORMAT, "name": self.name, "embedder_name": self.embedder_name,
            "stages": asdict(self.stages), "knn_neighbours": self.knn_neighbours, "top_k": self.top_k,
            "has_embedder": self.has_embedder, "has_reranker": self.has_reranker,
            "has_calibrator": self.has_calibrator, "trained_until": self.trained_until, "figures": self.figures,
        }

    def save(self) -> Path:
        """Write the manifest and the stage configs (models are written by whoever trained them)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "realgram.json").write_text(json.dumps(asdict(self.realgram), indent=2))
        (self.folder / "tracking.json").write_text(json.dumps(asdict(self.tracking), indent=2))
        (self.folder / MANIFEST).write_text(json.dumps(self.manifest(), indent=2))
        return self.folder

    @classmethod
    def load(cls, folder: str | Path) -> ModelSet:
        folder = Path(folder)
        try:
            data = json.loads((folder / MANIFEST).read_text())
        except (OSError, ValueError) as error:
            raise ModelSetError(f"{folder}: not a model set ({error})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ModelSetError(f"{folder}: not a model set (format {data.get('format') if isinstance(data, dict) else None!r})")
        try:
            model_set = cls(
                folder=folder, name=data["name"], embedder_name=data["embedder_name"],
                stages=Stages.from_dict(data["stages"]),
                realgram=RealgramConfig.from_dict(json.loads((folder / "realgram.json").read_text())),
                tracking=TrackingConfig.from_dict(json.loads((folder / "tracking.json").read_text())),
                knn_neighbours=int(data["knn_neighbours"]), top_k=int(data["top_k"]),
                has_embedder=bool(data["has_embedder"]), has_reranker=bool(data["has_reranker"]),
                has_calibrator=bool(data["has_calibrator"]), trained_until=data.get("trained_until"),
                figures=data.get("figures") or {},
            )
        except (OSError, KeyError, TypeError, ValueError) as error:
            raise ModelSetError(f"{folder}: not a model set ({type(error).__name__}: {error})") from None
        for path in (model_set.embedder_path, model_set.reranker_path, model_set.calibrator_path):
            if path is not None and not path.is_file():
                raise ModelSetError(f"{folder}: {path.name} is missing")
        return model_set

