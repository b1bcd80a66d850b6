import csv
import itertools
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotator.catalog import load_catalog
from annotator.models import Category, Company, Product, ProductImage
from annotator.services.frames import checksum_of
from tests.factories import shelf_image

GROCERY_STORE = Path(__file__).resolve().parents[3] / "shared" / "data" / "grocery-store"
GROCERY_HEADER = ("Class Name (str),Class ID (int),Coarse Class Name (str),Coarse Class ID (int),"
                  "Iconic Image Path (str),Product Description Path (str)")

pytestmark = pytest.mark.django_db

_unique = itertools.count()


def write_image(path: Path) -> bytes:
    """A small JPEG whose bytes differ from every other one written by these tests."""
    n = next(_unique)
    data = shelf_image((48 + n % 50, 32 + n // 50), [((4, 4, 20, 20), n)])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


# (name, class id, coarse name, coarse id, folder)
GROCERY_CLASSES = [
    ("Golden-Delicious", 0, "Apple", 0, "Fruit/Apple/Golden-Delicious"),
    ("Granny-Smith", 1, "Apple", 0, "Fruit/Apple/Granny-Smith"),
    ("Oat-Milk", 2, "Oatghurt", 1, "Packages/Oatghurt/Oat-Milk"),
]


def grocery_store(root: Path, splits: dict[str, dict[int, int]] | None = None) -> dict:
    """A GroceryStoreDataset tree under root/dataset; returns the bytes written, by role."""
    splits = splits or {"train": {0: 2, 1: 1, 2: 3}, "test": {0: 1, 1: 2, 2: 1}}
    dataset = root / "dataset"
    written = {"iconic": {}, **{split: {} for split in splits}}
    rows = [GROCERY_HEADER]
    for name, class_id, coarse, coarse_id, folder in GROCERY_CLASSES:
        iconic = f"/iconic-images-and-descriptions/{folder}/{name}_Iconic.jpg"
        written["iconic"][name] = write_image(dataset / iconic.lstrip("/"))
        description = f"/iconic-images-and-descriptions/{folder}/{name}_Description.txt"
        rows.append(f"{name},{class_id},{coarse},{coarse_id},{iconic},{description}")
    (dataset / "classes.csv").write_text("\n".join(rows) + "\n")
    for split, counts in splits.items():
        lines = []
        for name, class_id, coarse, coarse_id, folder in GROCERY_CLASSES:
            written[split][name] = []
            for k in range(1, counts.get(class_id, 0) + 1):
                relative = f"{split}/{folder}/{name}_{k:03d}.jpg"
                written[split][name].append(write_image(dataset / relative))
                lines.append(f"{relative}, {class_id}, {coarse_id}")
        (dataset / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return written


def image_folder(root: Path, classes: list[tuple[str, str, str]] | None = None) -> dict:
    """An ImageFolder tree: cola (with an iconic image), water, and an empty folder."""
    written = {
        "cola": {"iconic": write_image(root / "cola" / "iconic.jpg"),
                 "refs": [write_image(root / "cola" / "a.jpg"), write_image(root / "cola" / "b.png")]},
        "water": {"refs": [write_image(root / "water" / "1.jpg"), write_image(root / "water" / "2.JPG")]},
    }
    (root / "empty").mkdir()
    (root / "water" / "notes.txt").write_text("not an image")
    if classes is not None:
        write_classes(root / "classes.csv", classes)
    return written


def write_classes(path: Path, rows: list[tuple[str, str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sku", "name", "category"])
        writer.writerows(rows)


def table_counts() -> tuple[int, int, int]:
    return Product.objects.count(), ProductImage.objects.count(), Category.objects.count()


def checksums(product: Product, primary: bool | None = None) -> set[str]:
    images = product.images.all() if primary is None else product.images.filter(is_primary=primary)
    return set(images.values_list("checksum", flat=True))


def sums(blobs) -> set[str]:
    return {checksum_of(blob) for blob in blobs}


def test_grocery_store_products_with_iconic_primary_and_train_references(tmp_path, capsys):
    written = grocery_store(tmp_path / "gs")
    call_command("import_catalog", str(tmp_path / "gs"), company="acme")

    company = Company.objects.get(name="acme")
    assert set(Product.objects.filter(company=company).values_list("sku", "name", "category__name")) == {
        ("Golden-Delicious", "Golden Delicious", "Apple"),
        ("Granny-Smith", "Granny Smith", "Apple"),
        ("Oat-Milk", "Oat Milk", "Oatghurt"),
    }
    assert set(Category.objects.filter(company=company).values_list("name", flat=True)) == {"Apple", "Oatghurt"}
    for name, *_ in GROCERY_CLASSES:
        product = Product.objects.get(company=company, sku=name)
        assert checksums(product, primary=True) == sums([written["iconic"][name]])
        assert checksums(product, primary=False) == sums(written["train"][name])
        assert not checksums(product) & sums(written["test"][name])
    assert ProductImage.objects.count() == 3 + 6
    # The stored file holds the catalogue's bytes.
    image = ProductImage.objects.get(product__sku="Oat-Milk", is_primary=True)
    assert checksum_of(image.image.read()) == image.checksum
    assert "3 products created, 0 updated, 9 reference images added" in capsys.readouterr().out


def test_grocery_store_dataset_folder_itself_can_be_given(tmp_path):
    grocery_store(tmp_path / "gs")
    call_command("import_catalog", str(tmp_path / "gs" / "dataset"))
    assert Product.objects.filter(company__name="default").count() == 3


def test_split_test_picks_the_test_images(tmp_path):
    written = grocery_store(tmp_path / "gs")
    call_command("import_catalog", str(tmp_path / "gs"), split="test")
    for name, *_ in GROCERY_CLASSES:
        product = Product.objects.get(sku=name)
        assert checksums(product, primary=False) == sums(written["test"][name])
        assert checksums(product, primary=True) == sums([written["iconic"][name]])
    assert ProductImage.objects.count() == 3 + 4


def test_a_class_without_split_images_keeps_its_iconic_image(tmp_path):
    grocery_store(tmp_path / "gs", splits={"train": {0: 1, 1: 1}})
    call_command("import_catalog", str(tmp_path / "gs"))
    milk = Product.objects.get(sku="Oat-Milk")
    assert list(milk.images.values_list("is_primary", flat=True)) == [True]


def test_image_folder_without_classes_csv(tmp_path):
    written = image_folder(tmp_path / "shop")
    call_command("import_catalog", str(tmp_path / "shop"), company="shop")
    assert set(Product.objects.values_list("sku", "name", "category")) == {
        ("cola", "cola", None), ("water", "water", None)}
    assert Category.objects.count() == 0
    cola, water = Product.objects.get(sku="cola"), Product.objects.get(sku="water")
    assert checksums(cola, primary=True) == sums([written["cola"]["iconic"]])
    assert checksums(cola, primary=False) == sums(written["cola"]["refs"])
    # Without an iconic image the first file (by name) is the primary one, stored once.
    assert checksums(water, primary=True) == sums(written["water"]["refs"][:1])
    assert checksums(water, primary=False) == sums(written["water"]["refs"][1:])
    assert ProductImage.objects.count() == 5


def test_image_folder_with_classes_csv(tmp_path):
    image_folder(tmp_path / "shop", classes=[("cola", "Cola 1.5 l", "Drinks"), ("water", "Still water", "Drinks")])
    call_command("import_catalog", str(tmp_path / "shop"))
    assert set(Product.objects.values_list("sku", "name", "category__name")) == {
        ("cola", "Cola 1.5 l", "Drinks"), ("water", "Still water", "Drinks")}
    assert Category.objects.count() == 1


def test_image_folder_classes_csv_may_list_only_some_products(tmp_path):
    image_folder(tmp_path / "shop", classes=[("cola", "Cola", "Soda"), ("unknown", "Not on disk", "Ghosts")])
    call_command("import_catalog", str(tmp_path / "shop"))
    assert set(Product.objects.values_list("sku", "name", "category__name")) == {
        ("cola", "Cola", "Soda"), ("water", "water", None)}
    assert set(Category.objects.values_list("name", flat=True)) == {"Soda"}


def test_image_folder_with_classes_elsewhere(tmp_path):
    image_folder(tmp_path / "shop")
    write_classes(tmp_path / "meta" / "products.csv", [("water", "Sparkling water", "Water")])
    call_command("import_catalog", str(tmp_path / "shop"), classes=tmp_path / "meta" / "products.csv")
    assert Product.objects.get(sku="water").name == "Sparkling water"
    assert Product.objects.get(sku="water").category.name == "Water"
    assert Product.objects.get(sku="cola").name == "cola"


def test_a_missing_classes_file_is_an_error(tmp_path):
    image_folder(tmp_path / "shop")
    missing = tmp_path / "meta" / "typo.csv"
    with pytest.raises(CommandError, match=str(missing)):
        call_command("import_catalog", str(tmp_path / "shop"), classes=missing)
    assert table_counts() == (0, 0, 0)


def test_reimport_adds_no_duplicates_and_updates_names(tmp_path, capsys):
    root = tmp_path / "shop"
    image_folder(root, classes=[("cola", "Cola", "Soda")])
    call_command("import_catalog", str(root))
    before = table_counts()
    capsys.readouterr()

    call_command("import_catalog", str(root))
    assert table_counts() == before
    assert "0 products created, 2 updated, 0 reference images added" in capsys.readouterr().out

    write_classes(root / "classes.csv", [("cola", "Cola Zero", "Drinks"), ("water", "Water", "Drinks")])
    new_image = write_image(root / "water" / "3.jpg")
    call_command("import_catalog", str(root))
    assert set(Product.objects.values_list("sku", "name", "category__name")) == {
        ("cola", "Cola Zero", "Drinks"), ("water", "Water", "Drinks")}
    assert ProductImage.objects.count() == before[1] + 1
    assert checksum_of(new_image) in checksums(Product.objects.get(sku="water"), primary=False)
    assert Product.objects.get(sku="cola").images.filter(is_primary=True).count() == 1


def test_reimport_of_grocery_store_is_idempotent(tmp_path):
    grocery_store(tmp_path / "gs")
    call_command("import_catalog", str(tmp_path / "gs"))
    before = table_counts()
    call_command("import_catalog", str(tmp_path / "gs"))
    assert table_counts() == before
    # Another split adds its images to the same products.
    call_command("import_catalog", str(tmp_path / "gs"), split="test")
    assert table_counts() == (before[0], before[1] + 4, before[2])


def test_companies_have_separate_catalogues(tmp_path):
    grocery_store(tmp_path / "gs")
    call_command("import_catalog", str(tmp_path / "gs"), company="a")
    call_command("import_catalog", str(tmp_path / "gs"), company="b")
    assert Product.objects.filter(company__name="a").count() == 3
    assert Product.objects.filter(company__name="b").count() == 3
    assert ProductImage.objects.count() == 2 * 9
    assert Category.objects.count() == 2 * 2


def _break(root: Path, problem: str) -> tuple[Path, dict, str]:
    """Builds a broken catalogue; returns the path to import, extra options and the file the error must name."""
    dataset = root / "dataset"
    if problem == "empty directory":
        root.mkdir(parents=True)
        return root, {}, str(root)
    if problem == "only empty folders":
        (root / "a").mkdir(parents=True)
        (root / "b").mkdir()
        (root / "b" / "readme.txt").write_text("no images here")
        return root, {}, str(root)
    if problem == "not a directory":
        root.parent.mkdir(parents=True, exist_ok=True)
        root.write_text("a file")
        return root, {}, str(root)
    if problem.startswith("image folder"):
        image_folder(root)
        if problem == "image folder: unreadable image":
            (root / "water" / "2.JPG").write_bytes(b"this is not a jpeg")
            return root, {}, str(root / "water" / "2.JPG")
        if problem == "image folder: truncated image":
            data = (root / "cola" / "a.jpg").read_bytes()
            (root / "cola" / "a.jpg").write_bytes(data[: len(data) // 2])
            return root, {}, str(root / "cola" / "a.jpg")
        if problem == "image folder: classes.csv without sku":
            (root / "classes.csv").write_text("id,title\ncola,Cola\n")
            return root, {}, str(root / "classes.csv")
        if problem == "image folder: --classes without sku":
            (tmp := root.parent / "meta.csv").write_text("name;category\n")
            return root, {"classes": tmp}, str(tmp)
    grocery_store(root)
    if problem == "unreadable image":
        target = dataset / "train" / "Fruit/Apple/Granny-Smith/Granny-Smith_001.jpg"
        target.write_bytes(b"this is not a jpeg")
        return root, {}, str(target)
    if problem == "unreadable iconic image":
        target = dataset / "iconic-images-and-descriptions/Packages/Oatghurt/Oat-Milk/Oat-Milk_Iconic.jpg"
        target.write_bytes(target.read_bytes()[:200])
        return root, {}, str(target)
    if problem == "missing split file":
        return root, {"split": "val"}, str(dataset / "val.txt")
    if problem == "unknown class id":
        with (dataset / "train.txt").open("a") as handle:
            handle.write("train/Fruit/Apple/Golden-Delicious/Golden-Delicious_001.jpg, 99, 0\n")
        return root, {}, f"{dataset / 'train.txt'}:7"
    if problem == "malformed split line":
        lines = (dataset / "train.txt").read_text().splitlines()
        lines[1] = "train/Fruit/Apple/Golden-Delicious/Golden-Delicious_002.jpg 0 0"
        (dataset / "train.txt").write_text("\n".join(lines) + "\n")
        return root, {}, f"{dataset / 'train.txt'}:2"
    if problem == "missing split image":
        (dataset / "train" / "Packages/Oatghurt/Oat-Milk/Oat-Milk_003.jpg").unlink()
        return root, {}, f"{dataset / 'train.txt'}:6"
    if problem == "bad class id in classes.csv":
        text = (dataset / "classes.csv").read_text().replace("Granny-Smith,1,", "Granny-Smith,one,")
        (dataset / "classes.csv").write_text(text)
        return root, {}, f"{dataset / 'classes.csv'}:3"
    if problem == "short row in classes.csv":
        with (dataset / "classes.csv").open("a") as handle:
            handle.write("Lonely,3,Apple\n")
        return root, {}, f"{dataset / 'classes.csv'}:5"
    if problem == "missing iconic image":
        (dataset / "iconic-images-and-descriptions/Fruit/Apple/Golden-Delicious/Golden-Delicious_Iconic.jpg").unlink()
        return root, {}, f"{dataset / 'classes.csv'}:2"
    raise AssertionError(problem)


BROKEN = [
    ("empty directory", "no products found"),
    ("only empty folders", "no products found"),
    ("not a directory", "not a directory"),
    ("image folder: unreadable image", "not a readable image"),
    ("image folder: truncated image", "not a readable image"),
    ("image folder: classes.csv without sku", "sku"),
    ("image folder: --classes without sku", "sku"),
    ("unreadable image", "not a readable image"),
    ("unreadable iconic image", "not a readable image"),
    ("missing split file", "split file not found"),
    ("unknown class id", "known class id"),
    ("malformed split line", "expected 'path, class id, coarse id'"),
    ("missing split image", "image not found"),
    ("bad class id in classes.csv", "expected name, class id"),
    ("short row in classes.csv", "expected name, class id"),
    ("missing iconic image", "iconic image not found"),
]


@pytest.mark.parametrize("problem, expected", BROKEN, ids=[problem for problem, _ in BROKEN])
def test_a_broken_catalogue_exits_with_one_line_and_changes_nothing(tmp_path, media_root, problem, expected):
    grocery_store(tmp_path / "ok")
    call_command("import_catalog", str(tmp_path / "ok"))
    before = table_counts()
    assert before == (3, 9, 2)
    stored_files = sorted(p for p in Path(media_root).rglob("*") if p.is_file())

    path, options, named = _break(tmp_path / "bad", problem)
    with pytest.raises(CommandError) as error:
        call_command("import_catalog", str(path), **options)
    message = str(error.value)
    assert expected in message
    assert "\n" not in message
    assert named in message
    assert table_counts() == before
    assert sorted(p for p in Path(media_root).rglob("*") if p.is_file()) == stored_files


def test_a_failure_while_writing_rolls_back_rows_and_files(tmp_path, monkeypatch, media_root):
    grocery_store(tmp_path / "gs")
    original_save = ProductImage.save
    saved = []

    def save_then_fail(self, *args, **kwargs):
        if len(saved) == 4:
            raise RuntimeError("disk full")
        saved.append(self)
        return original_save(self, *args, **kwargs)

    monkeypatch.setattr(ProductImage, "save", save_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        call_command("import_catalog", str(tmp_path / "gs"))
    assert table_counts() == (0, 0, 0)
    assert not [p for p in Path(media_root).rglob("*") if p.is_file()]


@pytest.mark.skipif(not GROCERY_STORE.is_dir(), reason="needs ../shared/data/grocery-store")
def test_grocery_store_dataset_loads_with_its_test_split():
    products = load_catalog(GROCERY_STORE, split="test")
    assert len(products) == 81
    assert len({p.sku for p in products}) == 81
    for product in products:
        assert product.primary is not None and product.primary.is_file()
        assert "Iconic" in product.primary.name
        assert product.primary not in product.images
        assert product.category
    lines = [line for line in (GROCERY_STORE / "dataset" / "test.txt").read_text().splitlines() if line.strip()]
    assert sum(len(p.images) for p in products) == len(lines) == 2485
    assert all("/test/" in str(image) for p in products for image in p.images)
    with (GROCERY_STORE / "dataset" / "classes.csv").open(newline="") as handle:
        coarse = {row[2] for row in itertools.islice(csv.reader(handle), 1, None) if row}
    assert {p.category for p in products} == coarse
