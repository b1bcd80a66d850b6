import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inference.embedder import EmbedderConfig, load_embedder
from inference.embedder_training import (
    CropAugmenter,
    DatasetError,
    TrainingConfig,
    TrainingSample,
    build_model,
    embed_samples,
    freeze_early_blocks,
    grocery_store_samples,
    half_precision_copy,
    image_folder_samples,
    load_crop,
    split_by_index,
    train_embedder,
)
from tests.factories import shelf_image

TINY = TrainingConfig(embedder=EmbedderConfig(backbone="test_efficientnet", embedding_dim=32, input_size=64), init="none", epochs=2, p=3, k=2,
                      lr=1e-3, log_every=1)


def write(path: Path, colour: int, size=(48, 40), shift: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(shelf_image(size, [((4 + shift, 4, 30, 28), colour)]))
    return path


@pytest.fixture
def samples(tmp_path) -> list[TrainingSample]:
    """Four classes (one colour and pattern each), five images per class, one with a box."""
    out = []
    for label in range(4):
        for n in range(5):
            image = write(tmp_path / "images" / f"c{label}" / f"{n}.jpg", label, shift=n)
            bbox = (2.0, 2.0, 36.0, 32.0) if n == 0 else None
            out.append(TrainingSample(image, bbox, label, group=0, category=label // 2))
    return out


def test_training_saves_a_checkpoint_that_load_embedder_rebuilds(tmp_path, samples):
    lines = []
    report = train_embedder(samples, TINY, tmp_path / "out" / "tiny.pt", classes=["a", "b", "c", "d"], log=lines.append)
    # 20 crops in batches of 3 x 2 -> 4 steps an epoch.
    assert (report.epochs, report.steps, report.samples, report.classes) == (2, 8, 20, 4)
    assert len(report.loss_history) == len(report.accuracy_history) == 2
    assert all(np.isfinite(report.loss_history))
    assert report.name.startswith("tiny-") and len(report.name) == len("tiny-") + 8
    assert any("step 8/8" in line for line in lines)

    embedder = load_embedder(report.checkpoint)
    assert embedder.name == report.name
    assert embedder.config == EmbedderConfig(backbone="test_efficientnet", embedding_dim=32, input_size=64)
    vectors = embed_samples(embedder, samples, batch_size=7)
    assert vectors.shape == (20, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)

    data = torch.load(report.checkpoint, weights_only=False)
    assert data["classes"] == ["a", "b", "c", "d"] and data["labels"] == [0, 1, 2, 3]
    assert data["epochs"] == 2 and data["steps"] == 8 and data["loss_history"] == report.loss_history
    assert data["training"]["p"] == 3 and data["training"]["arcface_margin"] == 0.3
    assert data["arcface_state_dict"]["weight"].shape == (4, 32)


def test_training_is_deterministic_per_seed_and_lowers_the_loss(tmp_path, samples):
    config = dataclasses.replace(TINY, epochs=6)
    first = train_embedder(samples, config, tmp_path / "a.pt", log=lambda line: None)
    second = train_embedder(samples, config, tmp_path / "b.pt", log=lambda line: None)
    assert first.loss_history == second.loss_history
    assert first.name.split("-")[-1] == second.name.split("-")[-1]  # same weights, same hash
    assert first.loss_history[-1] < first.loss_history[0]


def test_max_steps_stops_early(tmp_path, samples):
    report = train_embedder(samples, dataclasses.replace(TINY, max_steps=3), tmp_path / "m.pt", log=lambda line: None)
    assert report.steps == 3 and report.epochs == 1


def test_a_time_box_shortens_the_run_to_the_steps_that_fit(tmp_path, samples, monkeypatch):
    import inference.embedder_training as training

    clock = iter(range(0, 10_000, 10))  # every reading of the clock is 10 s later: 10 s a step
    monkeypatch.setattr(training.time, "perf_counter", lambda: next(clock))
    lines = []
    report = train_embedder(samples, dataclasses.replace(TINY, epochs=20, max_seconds=100), tmp_path / "t.pt",
                            log=lines.append)
    assert report.steps < 20 * 4
    assert any("steps fit in 100 s" in line for line in lines)


def test_a_warm_start_continues_from_a_checkpoint(tmp_path, samples):
    first = train_embedder(samples, TINY, tmp_path / "first.pt", log=lambda line: None)
    warm = dataclasses.replace(TINY, epochs=1, init_checkpoint=str(first.checkpoint))
    again = train_embedder(samples, warm, tmp_path / "again.pt", log=lambda line: None)
    assert again.loss_history[0] < first.loss_history[0]
    with pytest.raises(ValueError, match="not this run's"):
        train_embedder(samples, dataclasses.replace(warm, embedder=dataclasses.replace(warm.embedder, input_size=32)), tmp_path / "x.pt", log=lambda line: None)


def test_frozen_stages_and_batchnorm_statistics_do_not_change(tmp_path, samples):
    config = dataclasses.replace(TINY, train_last_blocks=1, epochs=1)
    torch.manual_seed(config.seed)  # as train_embedder does: the same initial weights
    before = build_model(config).state_dict()
    report = train_embedder(samples, config, tmp_path / "f.pt", name="frozen", log=lambda line: None)
    after = torch.load(report.checkpoint, weights_only=False)["state_dict"]
    last = len(build_model(config).backbone.blocks) - 1
    for key, value in before.items():
        changed = not torch.equal(value, after[key])
        trainable_key = key.startswith(f"backbone.blocks.{last}.") or key.startswith(("backbone.conv_head", "backbone.bn2", "head."))
        if "running_" in key or "num_batches" in key or not trainable_key:
            assert not changed, key
    assert not torch.equal(before["head.weight"], after["head.weight"])
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(f"backbone.blocks.{last}.")
               and "running_" not in k and "num_batches" not in k)


def test_freeze_early_blocks_marks_only_the_last_stages_trainable():
    model = build_model(TINY)
    stages = len(model.backbone.blocks)
    frozen = freeze_early_blocks(model, 2)
    trainable = {name.split(".")[1] + ("." + name.split(".")[2] if name.startswith("backbone.blocks") else "")
                 for name, p in model.named_parameters() if p.requires_grad and name.startswith("backbone.")}
    assert trainable == {f"blocks.{stages - 2}", f"blocks.{stages - 1}", "conv_head", "bn2"}
    assert model.backbone.conv_stem in frozen and model.backbone.blocks[0] in frozen
    assert all(p.requires_grad for p in model.head.parameters())
    assert freeze_early_blocks(build_model(TINY), None) == []
    with pytest.raises(ValueError, match="train_last_blocks"):
        freeze_early_blocks(build_model(TINY), stages + 1)


def test_imagenet_init_needs_the_lite0_backbone_and_unknown_inits_are_refused():
    with pytest.raises(ValueError, match="tf_efficientnet_lite0"):
        build_model(dataclasses.replace(TINY, init="imagenet-lite0"))
    with pytest.raises(ValueError, match="init"):
        build_model(dataclasses.replace(TINY, init="imagenet"))


def test_the_augmenter_keeps_the_size_and_changes_the_pixels_mildly():
    torch.manual_seed(0)
    crop = Image.open(io.BytesIO(shelf_image((60, 120), [((5, 5, 50, 100), 2)]))).convert("RGB")
    augmenter = CropAugmenter(64)
    outputs = [np.asarray(augmenter(crop), dtype=np.float32) for _ in range(4)]
    reference = np.asarray(crop.resize((64, 64), Image.BILINEAR), dtype=np.float32)
    assert all(o.shape == (64, 64, 3) for o in outputs)
    assert all(np.abs(o - reference).mean() > 0.5 for o in outputs)
    assert all(np.abs(o - reference).mean() < 80 for o in outputs)


def test_load_crop_cuts_the_box(samples):
    whole, boxed = load_crop(samples[1]), load_crop(samples[0])
    assert whole.size == (48, 40) and boxed.size == (36, 32)


def test_grocery_store_reader_labels_fine_classes_with_coarse_categories(tmp_path):
    dataset = tmp_path / "gs" / "dataset"
    (dataset / "classes.csv").parent.mkdir(parents=True)
    (dataset / "classes.csv").write_text(
        "Class Name (str),Class ID (int),Coarse Class Name (str),Coarse Class ID (int),Iconic Image Path (str),"
        "Product Description Path (str)\nGranny-Smith,0,Apple,0,/i.jpg,/d.txt\nOat-Milk,1,Oatghurt,5,/i.jpg,/d.txt\n")
    write(dataset / "train" / "a.jpg", 0)
    write(dataset / "train" / "b.jpg", 1)
    (dataset / "train.txt").write_text("train/a.jpg, 0, 0\ntrain/b.jpg, 1, 5\n")
    data = grocery_store_samples(tmp_path / "gs", "train")
    assert data.classes == ["Granny-Smith", "Oat-Milk"]
    assert [(s.image_path.name, s.label, s.category, s.group, s.bbox) for s in data.samples] == [
        ("a.jpg", 0, 0, 0, None), ("b.jpg", 1, 5, 0, None)]
    with pytest.raises(DatasetError, match="test.txt"):
        grocery_store_samples(tmp_path / "gs", "test")
    (dataset / "test.txt").write_text("test/missing.jpg, 0, 0\n")
    with pytest.raises(DatasetError, match=r"test.txt:1: image not found"):
        grocery_store_samples(dataset, "test")
    (dataset / "test.txt").write_text("train/a.jpg, 7, 0\n")
    with pytest.raises(DatasetError, match=r"test.txt:1: class id 7"):
        grocery_store_samples(dataset, "test")


def test_image_folder_reader_is_recursive_and_labels_by_a_given_class_order(tmp_path):
    write(tmp_path / "g" / "milk" / "1.jpg", 0)
    write(tmp_path / "g" / "milk" / "side" / "2.png", 0)
    write(tmp_path / "g" / "apple" / "1.jpg", 1)
    (tmp_path / "g" / "empty").mkdir()
    (tmp_path / "g" / "apple" / "notes.txt").write_text("not an image")
    gallery = image_folder_samples(tmp_path / "g")
    assert gallery.classes == ["apple", "milk"]
    assert [(s.image_path.relative_to(tmp_path / "g").as_posix(), s.label) for s in gallery.samples] == [
        ("apple/1.jpg", 0), ("milk/1.jpg", 1), ("milk/side/2.png", 1)]
    write(tmp_path / "q" / "milk" / "9.jpg", 0)
    write(tmp_path / "q" / "bread" / "1.jpg", 2)
    queries = image_folder_samples(tmp_path / "q", classes=gallery.classes)
    assert queries.classes == ["apple", "milk", "bread"]
    assert sorted(s.label for s in queries.samples) == [1, 2]
    with pytest.raises(DatasetError, match="no images"):
        image_folder_samples(tmp_path / "g" / "empty")
    with pytest.raises(DatasetError, match="not a directory"):
        image_folder_samples(tmp_path / "nowhere")


def test_split_by_index_gives_the_first_half_by_file_name_to_the_gallery(tmp_path):
    for name in ["b.jpg", "a.jpg", "c.jpg", "d.jpg"]:
        write(tmp_path / "tree" / "x" / name, 0)
    for name in ["3.jpg", "1.jpg", "2.jpg"]:
        write(tmp_path / "tree" / "y" / name, 1)
    write(tmp_path / "tree" / "z" / "only.jpg", 2)
    gallery, queries = split_by_index(image_folder_samples(tmp_path / "tree"))
    names = lambda data: [(data.classes[s.label], s.image_path.name) for s in data.samples]  # noqa: E731
    assert names(gallery) == [("x", "a.jpg"), ("x", "b.jpg"), ("y", "1.jpg"), ("y", "2.jpg"), ("z", "only.jpg")]
    assert names(queries) == [("x", "c.jpg"), ("x", "d.jpg"), ("y", "3.jpg")]


def test_a_half_precision_copy_is_smaller_and_embeds_like_the_original(tmp_path, samples):
    report = train_embedder(samples, dataclasses.replace(TINY, max_steps=2), tmp_path / "full.pt", log=lambda line: None)
    half = half_precision_copy(report.checkpoint, tmp_path / "half.pt")
    data = torch.load(half, weights_only=False)
    assert all(v.dtype == torch.float16 for v in data["state_dict"].values() if v.is_floating_point())
    assert "arcface_state_dict" not in data and data["name"] == report.name
    assert half.stat().st_size < report.checkpoint.stat().st_size
    full_vectors = embed_samples(load_embedder(report.checkpoint), samples)
    half_embedder = load_embedder(half)
    assert all(p.dtype == torch.float32 for p in half_embedder.model.parameters())
    half_vectors = embed_samples(half_embedder, samples)
    assert np.min(np.sum(full_vectors * half_vectors, axis=1)) > 0.999
