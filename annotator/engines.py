"""The process's pipeline engines (embedder, detector, search space), built once from settings.

A worker loads its models once and keeps them; Qdrant's embedded mode allows one client per
storage folder, so each process holds exactly one. Tests swap them with ``override``.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from django.conf import settings

from inference import ultralytics_offline
from inference.calibration import Calibrator
from inference.detector import YoloDetector
from inference.embedder import Embedder, load_embedder
from inference.onnx_embedder import OnnxEmbedder, export_onnx, load_onnx_embedder, sidecar_path
from inference.model_set import ModelSet as ModelSetFolder
from inference.model_set import Stages
from inference.pipeline import Pipeline, PipelineConfig
from inference.realgram import RealgramConfig
from inference.reranker import Reranker
from inference.search_space import EdgeSearchSpace, QdrantSearchSpace, collection_name, connect_qdrant
from inference.tracking import TrackingConfig

logger = logging.getLogger(__name__)
_lock = threading.RLock()  # engines are built from other engines
_engines: dict[str, object] = {}


def _get(key: str, build):
    with _lock:
        if key not in _engines:
            _engines[key] = build()
        return _engines[key]


def embedder() -> Embedder | OnnxEmbedder:
    """The configured embedder; with ``EMBEDDER_RUNTIME=onnx`` (the default) served by onnxruntime
    from an export kept under ``VAR_DIR/models`` (made on first use: 2-2.8x the crops/s of torch on
    CPU, embeddings agreeing at cosine > 0.999)."""

    def build() -> Embedder | OnnxEmbedder:
        if settings.TORCH_THREADS:
            torch.set_num_threads(settings.TORCH_THREADS)
        checkpoint = settings.EMBEDDER_CHECKPOINT or None
        model = load_embedder(checkpoint, batch_size=settings.EMBEDDING_BATCH_SIZE)
        if settings.EMBEDDER_RUNTIME != "onnx" or not isinstance(model, Embedder):
            return model
        return load_onnx_embedder(onnx_export_of(model, checkpoint), batch_size=settings.EMBEDDING_BATCH_SIZE,
                                  threads=settings.TORCH_THREADS or None)

    return _get("embedder", build)


def onnx_export_of(model: Embedder, checkpoint: str | None) -> Path:
    """The ONNX export of ``model``, made once per checkpoint file (its path, size and time name it).
    Written under a temporary name and renamed, so concurrent workers never read half a file."""
    source = Path(checkpoint) if checkpoint else None
    stamp = f"{source.resolve()}|{source.stat().st_size}|{source.stat().st_mtime_ns}" if source else "builtin"
    digest = hashlib.sha256(f"{model.name}|{stamp}".encode()).hexdigest()[:10]
    target = Path(settings.VAR_DIR) / "models" / f"{collection_name(model.name)}-{digest}.onnx"
    if not target.exists():
        partial = target.with_name(f".{target.name}.{os.getpid()}")
        export_onnx(model, partial)
        sidecar_path(partial).replace(sidecar_path(target))
        partial.replace(target)
    return target


def detector() -> YoloDetector | None:
    """The configured detector, or None: frames then keep the boxes they arrived with."""
    def build() -> YoloDetector | None:
        if not settings.DETECTOR_WEIGHTS:
            return None
        ultralytics_offline.prepare(settings.VAR_DIR / "ultralytics")
        return YoloDetector(settings.DETECTOR_WEIGHTS, confidence=settings.DETECTOR_CONFIDENCE)

    return _get("detector", build)


def qdrant_client():
    def build():
        client = connect_qdrant(url=settings.QDRANT_URL or None, path=settings.QDRANT_PATH, api_key=settings.QDRANT_API_KEY)
        # Close while the interpreter is whole: the embedded mode's own finaliser fails at shutdown.
        atexit.register(reset)
        return client

    return _get("qdrant", build)


def search_space() -> QdrantSearchSpace | EdgeSearchSpace:
    """A Qdrant server's collection with ``QDRANT_URL``; else the embedded engine that
    ``QDRANT_EMBEDDED`` names: ``edge`` (Qdrant Edge, the default) or ``local`` (qdrant-client's
    local mode), both kept under ``QDRANT_PATH`` and owned by one process."""

    return _get("search_space", lambda: space_for(embedder()))


def pipeline_config() -> PipelineConfig:
    realgram = tracking = None
    if settings.REALGRAM_CONFIG:
        realgram = RealgramConfig.from_dict(json.loads(Path(settings.REALGRAM_CONFIG).read_text()))
    if settings.TRACKING_CONFIG:
        tracking = TrackingConfig.from_dict(json.loads(Path(settings.TRACKING_CONFIG).read_text()))
    return PipelineConfig.named(
        settings.PIPELINE_VERSION, realgram=realgram, tracking=tracking,
        knn_neighbours=settings.KNN_NEIGHBOURS, top_k=settings.TOP_K_CANDIDATES,
    )


def reranker() -> Reranker | None:
    """The v3 model from ``RERANKER_MODEL``; None while there is none yet (v3 then ranks as v2).
    A file that is there but is no reranker raises ValueError: that is a mistake, not a fallback."""

    def build() -> Reranker | None:
        path = Path(settings.RERANKER_MODEL) if settings.RERANKER_MODEL else None
        if path is None or not path.exists():
            if settings.PIPELINE_VERSION == "v3":
                logger.warning("RERANKER_MODEL %s is not there yet: v3 ranks as v2 until train_reranker writes it",
                               path or "(unset)")
            return None
        return Reranker.load(path)

    return _get("reranker", build)


def pipeline() -> Pipeline:
    """The base pipeline: the configured models, for companies without a promoted model set."""
    return _get("pipeline", lambda: Pipeline(embedder(), search_space(), pipeline_config(), reranker()))


def space_for(model: Embedder | OnnxEmbedder):
    """The search space of an embedder's collection, on the configured engine."""
    name = collection_name(model.name)
    if not settings.QDRANT_URL and settings.QDRANT_EMBEDDED == "edge":
        space = EdgeSearchSpace(settings.QDRANT_PATH / "edge", name, model.dim)
        atexit.register(space.close)
        return space
    return QdrantSearchSpace(qdrant_client(), name, model.dim)


def base_model_set() -> ModelSetFolder:
    """The base pipeline (the configured embedder and stages) described as a model set."""
    served = pipeline()
    config = served.config
    return ModelSetFolder(
        folder=settings.VAR_DIR / "models" / "base", name="base", embedder_name=served.embedder.name,
        stages=Stages(realgram=config.realgram is not None, tracking=config.tracking is not None,
                      reranker=config.rerank and served.reranker is not None),
        realgram=config.realgram or RealgramConfig(), tracking=config.tracking or TrackingConfig(),
        knn_neighbours=config.knn_neighbours, top_k=config.top_k, has_embedder=False)


@dataclass
class ModelSetEngines:
    """A promoted model set, loaded: its embedder, collection, pipeline and calibrator."""

    model_set: ModelSetFolder
    embedder: Embedder | OnnxEmbedder
    search_space: object
    pipeline: Pipeline
    calibrator: Calibrator | None


def model_set_engines(folder: str | Path) -> ModelSetEngines:
    """A model set's engines, loaded once per folder (a folder never changes once written). Served
    by onnxruntime from the set's own export unless ``EMBEDDER_RUNTIME=torch``."""

    def build() -> ModelSetEngines:
        model_set = ModelSetFolder.load(folder)
        onnx = model_set.onnx_path
        if settings.EMBEDDER_RUNTIME == "onnx" and onnx is not None:
            model = load_onnx_embedder(onnx, batch_size=settings.EMBEDDING_BATCH_SIZE,
                                       threads=settings.TORCH_THREADS or None)
        else:
            model = load_embedder(model_set.embedder_path, batch_size=settings.EMBEDDING_BATCH_SIZE)
        space = space_for(model)
        served = Pipeline(model, space, model_set.pipeline_config(), model_set.load_reranker())
        return ModelSetEngines(model_set, model, space, served, model_set.load_calibrator())

    return _get(f"model-set:{Path(folder).resolve()}", build)


def reset() -> None:
    """Forget every engine (closing the Qdrant client or shard), so the next call rebuilds from settings."""
    with _lock:
        client = _engines.get("qdrant")
        spaces = [_engines.get("search_space")] + [e.search_space for e in _engines.values()
                                                   if isinstance(e, ModelSetEngines)]
        _engines.clear()
    if client is not None:
        client.close()
    for space in spaces:
        if isinstance(space, EdgeSearchSpace):
            space.close()


# Engines built from others; overriding one of their parts rebuilds them.
_BUILT_FROM = {"search_space": {"embedder", "qdrant"}, "pipeline": {"embedder", "search_space", "reranker"}}


@contextmanager
def override(**engines: object) -> Iterator[None]:
    """Use the given engines (keys: embedder, detector, qdrant, search_space, reranker, pipeline) meanwhile."""
    with _lock:
        saved = dict(_engines)
        _engines.update(engines)
        for derived, parts in _BUILT_FROM.items():
            if derived not in engines and parts & engines.keys():
                _engines.pop(derived, None)
    try:
        yield
    finally:
        with _lock:
            _engines.clear()
            _engines.update(saved)


def s3_client(endpoint_url: str | None = None):
    """A boto3 S3 client with the configured credentials (not cached: clients are cheap)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or settings.AWS_S3_ENDPOINT_URL,
        region_name=settings.AWS_S3_REGION_NAME or "us-east-1",
        aws_access_key_id=settings.AWS_ACCESS_KEY_ID,
        aws_secret_access_key=settings.AWS_SECRET_ACCESS_KEY,
    )
