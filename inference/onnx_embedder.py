"""The embedder exported to ONNX and run by onnxruntime on the CPU.

``export_onnx`` writes ``<path>`` (a graph with a dynamic batch axis: pixels (n, 3, s, s) ->
embeddings (n, dim), L2 normalisation included) and ``<path>.json`` (the embedder's config and
name), so ``OnnxEmbedder`` needs neither torch nor the training code to run. Preprocessing is the
torch embedder's own (``inference.embedder.preprocess_crops``): both see the same pixels.

``quantize_onnx`` turns such an export into an int8 one by static quantization (onnxruntime's
``quantize_static``: QDQ format, int8 weights per output channel, uint8 activations), the
activation ranges calibrated on crops the caller gives (a company's own, at export); the result
loads with ``load_onnx_embedder`` like the fp32 file and its sidecar says ``"quantization"``.

The TorchScript-based exporter is used (``dynamo=False``): the dynamo exporter needs onnxscript,
which is not installed, and this one runs offline with the pinned torch.
"""
from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from inference.embedder import Embedder, EmbedderConfig, preprocess_crops

OPSET = 17
INPUT_NAME = "pixels"
OUTPUT_NAME = "embeddings"


def sidecar_path(path: str | Path) -> Path:
    """Where the config and name of an exported embedder are kept: ``<path>.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def export_onnx(embedder: Embedder, path: str | Path, opset: int = OPSET) -> Path:
    """Export a torch ``Embedder`` to ``path`` (dynamic batch axis) with its ``<path>.json`` sidecar."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = embedder.config.input_size
    example = torch.zeros(2, 3, size, size)
    model = embedder.model.eval()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter announces its successor
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME], dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )
    sidecar_path(path).write_text(json.dumps(
        {"name": embedder.name, "config": asdict(embedder.config), "dim": embedder.dim, "opset": opset}, indent=2
    ) + "\n")
    return path


class _CropReader:
    """Feeds preprocessed calibration crops to onnxruntime's calibrator, one batch at a time."""

    def __init__(self, pixels: np.ndarray, batch_size: int):
        self._batches = iter([pixels[start : start + batch_size] for start in range(0, len(pixels), batch_size)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}

    def rewind(self) -> None:  # pragma: no cover - called by some calibration methods only
        raise NotImplementedError


def quantize_onnx(source: str | Path, path: str | Path, calibration: Sequence[Image.Image],
                  batch_size: int = 16, per_channel: bool = True) -> Path:
    """Write an int8 statically quantized copy of the fp32 export ``source`` to ``path`` (with its
    ``<path>.json`` sidecar), activation ranges calibrated (min/max) on the ``calibration`` crops.

    Raises ValueError without calibration crops."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if not calibration:
        raise ValueError("int8 quantization needs calibration crops; none were given")
    source, path = Path(source), Path(path)
    meta = json.loads(sidecar_path(source).read_text())
    config = EmbedderConfig.from_dict(meta["config"])
    pixels = np.ascontiguousarray(preprocess_crops(calibration, config))
    path.parent.mkdir(parents=True, exist_ok=True)
    quantize_static(
        str(source), str(path), _CropReader(pixels, batch_size), quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=per_channel,
        calibrate_method=CalibrationMethod.MinMax,
    )
    meta["quantization"] = {"format": "QDQ", "weights": "int8", "activations": "uint8",
                            "per_channel": per_channel, "calibration_crops": len(calibration), "from": source.name}
    sidecar_path(path).write_text(json.dumps(meta, indent=2) + "\n")
    return path


class OnnxEmbedder:
    """Embeds crops in batches with onnxruntime (CPUExecutionProvider); returns float32 rows of unit
    length. Same interface as ``inference.embedder.Embedder``: ``embed``, ``preprocess``, ``name``,
    ``dim``, ``config``, ``batch_size``.

    threads: onnxruntime's intra-op threads (None: its default, one per physical core)."""

    def __init__(self, path: str | Path, config: EmbedderConfig, name: str, batch_size: int = 64,
                 threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.path = Path(path)
        self.session = onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.config = config
        self.name = name
        self.batch_size = batch_size
        dim = self.session.get_outputs()[0].shape[1]
        if not isinstance(dim, int):
            raise ValueError(f"{self.path}: the output has no fixed embedding size ({dim!r})")
        self._dim = dim

    @property
    def dim(self) -> int:
        return self._dim

    def preprocess(self, crops: Sequence[Image.Image]) -> np.ndarray:
        return np.ascontiguousarray(preprocess_crops(crops, self.config))

    def embed(self, crops: Sequence[Image.Image]) -> np.ndarray:
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks = [
            self.session.run([OUTPUT_NAME], {INPUT_NAME: self.preprocess(crops[start : start + self.batch_size])})[0]
            for start in range(0, len(crops), self.batch_size)
        ]
        return np.concatenate(chunks).astype(np.float32, copy=False)


def load_onnx_embedder(path: str | Path, batch_size: int = 64, threads: int | None = None) -> OnnxEmbedder:
    """An ``OnnxEmbedder`` from an exported file and its ``<path>.json`` sidecar."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX embedder not found: {path}")
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        raise FileNotFoundError(f"ONNX embedder sidecar not found: {sidecar} (written by export_onnx)")
    try:
        meta = json.loads(sidecar.read_text())
        config = EmbedderConfig.from_dict(meta["config"])
        name = str(meta["name"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{sidecar}: expected JSON with 'name' and 'config' ({error})") from None
    return OnnxEmbedder(path, config, name, batch_size=batch_size, threads=threads)
