import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from django.core.management import call_command
from django.core.management.base import CommandError

from inference.embedder import EmbedderConfig, EmbeddingNet, load_embedder, save_checkpoint
from inference.embedder_training import embed_samples, image_folder_samples
from tests.factories import shelf_image

TINY = EmbedderConfig(backbone="test_efficientnet", embedding_dim=32, input_size=64)
TINY_TRAINING = ["--backbone", "test_efficientnet", "--init", "none", "--embedding-dim", "32", "--input-size", "64",
                 "--p", "2", "--k", "2"]


def write(path: Path, colour: int, shift: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(shelf_image((44, 52), [((3 + shift, 5, 30, 40), colour)]))


def tree(root: Path, per_class: dict[str, int], offset: int = 0) -> Path:
    for colour, (name, count) in enumerate(per_class.items()):
        for n in range(count):
            write(root / name / f"{n + offset:03d}.jpg", colour, shift=n % 3)
    return root


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("embedder") / "tiny.pt"
    save_checkpoint(EmbeddingNet(TINY), TINY, path, name="tiny-eval")
    return path


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def figures(path: Path) -> dict:
    return json.loads(path.read_text())


def test_evaluate_gallery_against_queries_prints_and_writes_the_figures(tmp_path, tiny_checkpoint):
    gallery = tree(tmp_path / "gallery", {"milk": 2, "juice": 2, "apple": 1})
    queries = tree(tmp_path / "queries", {"milk": 1, "juice": 2}, offset=10)
    out = run("evaluate_embedder", "--gallery", gallery, "--queries", queries, "--embedder", tiny_checkpoint,
              "--json", tmp_path / "out" / "figures.json")
    assert "tiny-eval" in out and "top-1" in out and "mAP@R" in out
    data = figures(tmp_path / "out" / "figures.json")
    assert (data["queries"], data["gallery"], data["classes"], data["queries_without_class"]) == (3, 5, 2, 0)
    assert data["embedder"] == "tiny-eval" and data["dim"] == 32
    for key in ("top1", "top5", "map_at_r"):
        assert 0.0 <= data[key] <= 1.0
    assert data["top5"] == 1.0  # 5 gallery items: every class is within the top 5
    assert f"top-1 {data['top1']:.3f}" in out


def test_evaluate_identical_gallery_and_queries_is_perfect(tmp_path, tiny_checkpoint):
    same = tree(tmp_path / "same", {"a": 2, "b": 2, "c": 2})
    run("evaluate_embedder", "--gallery", same, "--queries", same, "--embedder", tiny_checkpoint,
        "--json", tmp_path / "f.json")
    assert figures(tmp_path / "f.json")["top1"] == 1.0


def test_evaluate_split_by_index(tmp_path, tiny_checkpoint):
    one_tree = tree(tmp_path / "tree", {"a": 4, "b": 3, "c": 1})
    run("evaluate_embedder", "--split-by-index", one_tree, "--embedder", tiny_checkpoint, "--json", tmp_path / "f.json")
    data = figures(tmp_path / "f.json")
    assert (data["gallery"], data["queries"], data["classes"]) == (2 + 2 + 1, 2 + 1, 2)


def grocery(root: Path) -> Path:
    dataset = root / "dataset"
    dataset.mkdir(parents=True)
    (dataset / "classes.csv").write_text(
        "Class Name (str),Class ID (int),Coarse Class Name (str),Coarse Class ID (int),Iconic Image Path (str),"
        "Product Description Path (str)\nA,0,X,0,/a.jpg,/a.txt\nB,1,X,0,/b.jpg,/b.txt\nC,2,Y,1,/c.jpg,/c.txt\n")
    for split, count in (("train", 3), ("test", 2)):
        lines = []
        for label in range(3):
            for n in range(count):
                relative = f"{split}/{label}/{n}.jpg"
                write(dataset / relative, label, shift=n)
                lines.append(f"{relative}, {label}, {label // 2}")
        (dataset / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_evaluate_grocery_store_uses_train_as_gallery_and_test_as_queries(tmp_path, tiny_checkpoint):
    root = grocery(tmp_path / "gs")
    run("evaluate_embedder", "--grocery", root, "--embedder", tiny_checkpoint, "--json", tmp_path / "f.json")
    data = figures(tmp_path / "f.json")
    assert (data["gallery"], data["queries"], data["classes"]) == (9, 6, 3)


def test_evaluate_without_an_embedder_uses_the_imagenet_default(tmp_path):
    one_tree = tree(tmp_path / "tree", {"a": 2, "b": 2})
    out = run("evaluate_embedder", "--split-by-index", one_tree, "--json", tmp_path / "f.json")
    assert "efficientnet-lite0-imagenet (1280-d, input 224)" in out
    assert figures(tmp_path / "f.json")["embedder"] == "efficientnet-lite0-imagenet"


@pytest.mark.parametrize("args, message", [
    (["--gallery", "{tmp}/nowhere", "--queries", "{tmp}/q"], "nowhere: not a directory"),
    (["--gallery", "{tmp}/g"], "--gallery and --queries go together"),
    (["--split-by-index", "{tmp}/g", "--embedder", "{tmp}/missing.pt"], "missing.pt: cannot load the embedder"),
    (["--grocery", "{tmp}"], "classes.csv: not found"),
    (["--split-by-index", "{tmp}/single"], "single: no query images"),
])
def test_evaluate_refuses_bad_input_with_one_line_naming_the_file(tmp_path, args, message):
    tree(tmp_path / "g", {"a": 2})
    tree(tmp_path / "q", {"a": 1})
    tree(tmp_path / "single", {"a": 1, "b": 1})
    with pytest.raises(CommandError) as error:
        run("evaluate_embedder", *[a.format(tmp=tmp_path) for a in args])
    assert message in str(error.value) and "\n" not in str(error.value)


def test_train_on_an_image_folder_writes_a_loadable_checkpoint_with_fp16_and_onnx_copies(tmp_path):
    images = tree(tmp_path / "train", {"a": 3, "b": 3, "c": 2})
    out = run("train_embedder", "--out", tmp_path / "m" / "shop.pt", "--imagefolder", images, *TINY_TRAINING,
              "--epochs", "2", "--name", "shop-v1", "--fp16", tmp_path / "m" / "shop-fp16.pt",
              "--onnx", tmp_path / "m" / "shop.onnx")
    assert "wrote" in out and "shop-v1" in out and "8 crops, 3 classes, 2 epochs, 4 steps" in out
    checkpoint = torch.load(tmp_path / "m" / "shop.pt", weights_only=False)
    assert checkpoint["classes"] == ["a", "b", "c"] and checkpoint["name"] == "shop-v1"
    samples = image_folder_samples(images).samples
    reference = embed_samples(load_embedder(tmp_path / "m" / "shop.pt"), samples)
    for other in ("shop-fp16.pt", "shop.onnx"):
        embedder = load_embedder(tmp_path / "m" / other)
        assert embedder.name == "shop-v1"
        assert np.sum(reference * embed_samples(embedder, samples), axis=1).min() > 0.999


def test_train_on_a_grocery_split(tmp_path):
    root = grocery(tmp_path / "gs")
    out = run("train_embedder", "--out", tmp_path / "g.pt", "--grocery", root, "--split", "test", *TINY_TRAINING,
              "--max-steps", "1", "--one-category-per-batch")
    assert "6 crops, 3 classes, 1 epochs, 1 steps" in out
    assert torch.load(tmp_path / "g.pt", weights_only=False)["classes"] == ["A", "B", "C"]


@pytest.mark.parametrize("args, message", [
    (["--imagefolder", "{tmp}/nowhere"], "nowhere: not a directory"),
    (["--grocery", "{tmp}/train", "--split", "val"], "classes.csv: not found"),
    (["--imagefolder", "{tmp}/train", "--backbone", "test_efficientnet"], "init 'imagenet-lite0' loads into"),
    (["--imagefolder", "{tmp}/train", *TINY_TRAINING, "--train-last-blocks", "99"], "train_last_blocks"),
])
def test_train_refuses_bad_input_with_one_line(tmp_path, args, message):
    tree(tmp_path / "train", {"a": 2, "b": 2})
    with pytest.raises(CommandError) as error:
        run("train_embedder", "--out", tmp_path / "x.pt", *[a.format(tmp=tmp_path) for a in args])
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "x.pt").exists()
