import json

import numpy as np
import pytest
import torch

from inference.embedder import Embedder, EmbedderConfig, EmbeddingNet, load_embedder, preprocess_crops
from inference.onnx_embedder import OnnxEmbedder, export_onnx, load_onnx_embedder, quantize_onnx, sidecar_path
from inference.images import open_image
from tests.factories import shelf_image

TINY = EmbedderConfig(backbone="test_efficientnet", embedding_dim=32, input_size=64)


def crops(count: int):
    return [open_image(shelf_image((40 + 9 * i, 70 - 5 * i), [((3, 4, 20 + i, 30), i), ((25, 10, 12, 40), i + 2)]))
            for i in range(count)]


@pytest.fixture(scope="module")
def tiny_torch() -> Embedder:
    torch.manual_seed(5)
    return Embedder(EmbeddingNet(TINY), TINY, name="tiny-onnx")


@pytest.fixture(scope="module")
def tiny_onnx(tiny_torch, tmp_path_factory) -> OnnxEmbedder:
    path = export_onnx(tiny_torch, tmp_path_factory.mktemp("onnx") / "tiny.onnx")
    return load_embedder(path)


@pytest.fixture(scope="module")
def default_pair(tmp_path_factory) -> tuple[Embedder, OnnxEmbedder]:
    torch_embedder = load_embedder()
    path = export_onnx(torch_embedder, tmp_path_factory.mktemp("onnx") / "lite0.onnx")
    return torch_embedder, load_onnx_embedder(path, threads=2)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("count", [1, 5])
def test_tiny_onnx_embeddings_agree_with_torch(tiny_torch, tiny_onnx, count):
    images = crops(count)
    expected, actual = tiny_torch.embed(images), tiny_onnx.embed(images)
    assert actual.shape == (count, 32) and actual.dtype == np.float32
    assert cosines(expected, actual).min() > 0.999
    np.testing.assert_allclose(np.linalg.norm(actual, axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("count", [1, 5])
def test_default_lite0_onnx_embeddings_agree_with_torch(default_pair, count):
    torch_embedder, onnx_embedder = default_pair
    images = crops(count)
    expected, actual = torch_embedder.embed(images), onnx_embedder.embed(images)
    assert actual.shape == (count, 1280)
    assert cosines(expected, actual).min() > 0.999


def test_the_onnx_embedder_has_the_torch_embedders_interface(tiny_torch, tiny_onnx):
    assert isinstance(tiny_onnx, OnnxEmbedder)
    assert (tiny_onnx.name, tiny_onnx.dim, tiny_onnx.config, tiny_onnx.batch_size) == (
        tiny_torch.name, tiny_torch.dim, tiny_torch.config, 64)
    empty = tiny_onnx.embed([])
    assert empty.shape == (0, 32) and empty.dtype == np.float32


def test_both_embedders_preprocess_through_the_same_function(tiny_torch, tiny_onnx):
    images = crops(3)
    shared = preprocess_crops(images, TINY)
    assert shared.shape == (3, 3, 64, 64)
    np.testing.assert_array_equal(tiny_onnx.preprocess(images), shared)
    np.testing.assert_array_equal(tiny_torch.preprocess(images).numpy(), shared)


def test_batches_larger_than_the_batch_size_are_split(tiny_onnx, tiny_torch):
    small_batches = OnnxEmbedder(tiny_onnx.path, TINY, "same", batch_size=2)
    np.testing.assert_allclose(small_batches.embed(crops(5)), tiny_onnx.embed(crops(5)), atol=1e-5)


def test_the_sidecar_holds_the_config_and_name(tiny_onnx):
    meta = json.loads(sidecar_path(tiny_onnx.path).read_text())
    assert meta["name"] == "tiny-onnx" and meta["dim"] == 32
    assert EmbedderConfig.from_dict(meta["config"]) == TINY
    assert sidecar_path(tiny_onnx.path).name == "tiny.onnx.json"


def test_an_onnx_file_without_its_sidecar_is_refused(tiny_onnx, tmp_path):
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes(tiny_onnx.path.read_bytes())
    with pytest.raises(FileNotFoundError, match="lonely.onnx.json"):
        load_embedder(lonely)
    sidecar_path(lonely).write_text("{not json")
    with pytest.raises(ValueError, match="lonely.onnx.json"):
        load_embedder(lonely)
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        load_embedder(tmp_path / "missing.onnx")


@pytest.fixture(scope="module")
def tiny_int8(tiny_onnx, tmp_path_factory) -> OnnxEmbedder:
    path = quantize_onnx(tiny_onnx.path, tmp_path_factory.mktemp("int8") / "tiny.int8.onnx", crops(12), batch_size=4)
    return load_onnx_embedder(path)


def test_the_int8_model_is_statically_quantized_with_qdq_nodes_and_int8_weights(tiny_onnx, tiny_int8):
    import onnx

    graph = onnx.load(str(tiny_int8.path)).graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert int8_weights and not [t for t in onnx.load(str(tiny_onnx.path)).graph.initializer
                                 if t.data_type == onnx.TensorProto.INT8]
    per_channel = [t for t in graph.initializer if t.name.endswith("_scale") and len(t.dims) == 1 and t.dims[0] > 1]
    assert per_channel, "weights are quantized per output channel"


def test_the_int8_embedder_embeds_like_the_fp32_one_and_says_so_in_its_sidecar(tiny_onnx, tiny_int8):
    images = crops(5)
    fp32, int8 = tiny_onnx.embed(images), tiny_int8.embed(images)
    assert int8.shape == (5, 32) and int8.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(int8, axis=1), 1, atol=1e-4)
    assert not np.allclose(int8, fp32, atol=1e-6), "the int8 graph runs, not a copy of the fp32 one"
    assert cosines(fp32, int8).mean() > 0.9
    assert (tiny_int8.name, tiny_int8.config, tiny_int8.dim) == (tiny_onnx.name, tiny_onnx.config, tiny_onnx.dim)
    meta = json.loads(sidecar_path(tiny_int8.path).read_text())
    assert meta["quantization"] == {"format": "QDQ", "weights": "int8", "activations": "uint8", "per_channel": True,
                                    "calibration_crops": 12, "from": "tiny.onnx"}


def test_int8_quantization_without_calibration_crops_is_refused(tiny_onnx, tmp_path):
    with pytest.raises(ValueError, match="calibration crops"):
        quantize_onnx(tiny_onnx.path, tmp_path / "none.onnx", [])
    assert not (tmp_path / "none.onnx").exists()
