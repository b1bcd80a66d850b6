"""The process's engines: the embedder served through onnxruntime from a cached export."""
from datetime import UTC, datetime

import numpy as np
import pytest

from annotator import engines
from inference.embedder import Embedder, save_checkpoint
from inference.onnx_embedder import OnnxEmbedder
from inference.search_space import CropPoint
from tests.factories import shelf_image


@pytest.fixture
def fresh_engines():
    engines.reset()
    yield
    engines.reset()


@pytest.fixture
def checkpoint(tiny_embedder, tmp_path):
    path = tmp_path / "tiny.pt"
    save_checkpoint(tiny_embedder.model, tiny_embedder.config, path, name="tiny-engine")
    return path


def crops():
    from PIL import Image
    import io

    return [Image.open(io.BytesIO(shelf_image((64, 64), [((0, 0, 30, 60), i)]))) for i in range(3)]


def test_the_embedder_is_served_by_onnxruntime_from_one_export(settings, tmp_path, checkpoint, tiny_embedder,
                                                                fresh_engines):
    settings.VAR_DIR = tmp_path / "var"
    settings.EMBEDDER_CHECKPOINT = str(checkpoint)
    settings.EMBEDDER_RUNTIME = "onnx"
    served = engines.embedder()
    assert isinstance(served, OnnxEmbedder) and served.name == "tiny-engine"
    [export] = (tmp_path / "var" / "models").glob("*.onnx")
    cosines = np.sum(served.embed(crops()) * tiny_embedder.embed(crops()), axis=1)
    assert np.all(cosines > 0.999)
    made_at = export.stat().st_mtime_ns
    engines.reset()
    assert isinstance(engines.embedder(), OnnxEmbedder)
    assert [p.stat().st_mtime_ns for p in (tmp_path / "var" / "models").glob("*.onnx")] == [made_at]


def test_the_torch_runtime_serves_the_checkpoint_itself(settings, tmp_path, checkpoint, fresh_engines):
    settings.VAR_DIR = tmp_path / "var"
    settings.EMBEDDER_CHECKPOINT = str(checkpoint)
    settings.EMBEDDER_RUNTIME = "torch"
    assert isinstance(engines.embedder(), Embedder)
    assert not (tmp_path / "var" / "models").exists()


@pytest.mark.parametrize("embedded, kind", [("edge", "EdgeSearchSpace"), ("local", "QdrantSearchSpace")])
def test_the_embedded_search_engine_is_the_one_configured(settings, tmp_path, tiny_embedder, fresh_engines,
                                                          embedded, kind):
    settings.QDRANT_URL = ""
    settings.QDRANT_EMBEDDED = embedded
    settings.QDRANT_PATH = tmp_path / "qdrant"
    with engines.override(embedder=tiny_embedder):
        space = engines.search_space()
        assert type(space).__name__ == kind
        space.upsert([CropPoint(1, np.ones(tiny_embedder.dim), 7, 1, 1, 1, 1, None, datetime(2024, 1, 1, tzinfo=UTC))])
        [[hit]] = space.search(np.ones((1, tiny_embedder.dim)), company_id=1)
        assert hit.product_id == 7
    assert (tmp_path / "qdrant").is_dir()
