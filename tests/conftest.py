from __future__ import annotations

import pytest

from annotator import engines
from inference.embedder import Embedder, EmbedderConfig, EmbeddingNet
from inference.pipeline import Pipeline, PipelineConfig
from inference.search_space import QdrantSearchSpace, connect_qdrant


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def quality_gate_off(settings):
    """The quality gate off: the factories' made-up shelves are flat colour blocks, which its
    absolute blur measure skips. Its own tests turn it on (``settings.QUALITY_GATE_ENABLED = True``)."""
    settings.QUALITY_GATE_ENABLED = False


@pytest.fixture(scope="session")
def tiny_embedder() -> Embedder:
    """A small random-weight timm model: embeddings that depend on the pixels, built in milliseconds."""
    import torch

    torch.manual_seed(0)
    config = EmbedderConfig(backbone="test_efficientnet", embedding_dim=32, input_size=64)
    return Embedder(EmbeddingNet(config), config, name="tiny-test")


@pytest.fixture
def search_space(tiny_embedder) -> QdrantSearchSpace:
    return QdrantSearchSpace(connect_qdrant(path=":memory:"), "crops-tiny-test", tiny_embedder.dim)


@pytest.fixture
def test_engines(tiny_embedder, search_space):
    """Pipeline engines for in-process tests: the tiny embedder and an in-memory Qdrant."""
    pipeline = Pipeline(tiny_embedder, search_space, PipelineConfig(version="v0-test", knn_neighbours=5, top_k=5))
    with engines.override(embedder=tiny_embedder, search_space=search_space, pipeline=pipeline, detector=None):
        yield pipeline
