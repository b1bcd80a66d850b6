import json
from pathlib import Path

import torch
from django.core.management.base import BaseCommand, CommandError

from inference.embedder import load_embedder
from inference.embedder_training import (
    DatasetError,
    embed_samples,
    grocery_store_samples,
    image_folder_samples,
    split_by_index,
)
from inference.retrieval import retrieval_metrics


class Command(BaseCommand):
    help = ("Retrieval quality of an embedder: each query's nearest gallery images, top-1, top-5 and mAP@R. "
            "Sets: two ImageFolder trees, one tree split per class by file name, or GroceryStoreDataset "
            "(gallery = train split, queries = test split, fine classes).")

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--gallery", type=Path, help="ImageFolder tree of gallery images (with --queries)")
        source.add_argument("--split-by-index", type=Path, metavar="DIR", dest="tree",
                            help="one ImageFolder tree: per class the first half by file name is the gallery")
        source.add_argument("--grocery", type=Path, help="GroceryStoreDataset root")
        parser.add_argument("--queries", type=Path, help="ImageFolder tree of query images (with --gallery)")
        parser.add_argument("--embedder", type=Path, help="checkpoint (.pt) or .onnx; default: ImageNet EfficientNet-Lite0")
        parser.add_argument("--batch-size", type=int, default=64)
        parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
        parser.add_argument("--json", type=Path, dest="json_path", help="also write the figures to this file")

    def handle(self, *args, gallery, queries, tree, grocery, embedder, batch_size, threads, json_path, **options):
        if (gallery is None) != (queries is None):
            raise CommandError(f"{gallery or queries}: --gallery and --queries go together")
        try:
            if grocery:
                gallery_set = grocery_store_samples(grocery, "train")
                query_set = grocery_store_samples(grocery, "test")
            elif tree:
                gallery_set, query_set = split_by_index(image_folder_samples(tree))
            else:
                gallery_set = image_folder_samples(gallery)
                query_set = image_folder_samples(queries, classes=gallery_set.classes)
        except DatasetError as error:
            raise CommandError(str(error)) from None
        if not query_set.samples:
            raise CommandError(f"{tree or queries}: no query images (every class has a single image?)")
        if threads:
            torch.set_num_threads(threads)
        try:
            model = load_embedder(embedder, batch_size=batch_size)
        except (FileNotFoundError, ValueError, KeyError, RuntimeError) as error:
            raise CommandError(f"{embedder}: cannot load the embedder ({str(error).splitlines()[0]})") from None
        self.stdout.write(f"embedder {model.name} ({model.dim}-d, input {model.config.input_size}): "
                          f"{len(gallery_set.samples)} gallery, {len(query_set.samples)} queries")
        gallery_embeddings = embed_samples(model, gallery_set.samples, batch_size, log=self.stdout.write)
        query_embeddings = embed_samples(model, query_set.samples, batch_size, log=self.stdout.write)
        metrics = retrieval_metrics(gallery_embeddings, [s.label for s in gallery_set.samples],
                                    query_embeddings, [s.label for s in query_set.samples])
        self.stdout.write(self.style.SUCCESS(
            f"top-1 {metrics.top1:.3f}  top-5 {metrics.top5:.3f}  mAP@R {metrics.map_at_r:.3f}  "
            f"top-5 items {metrics.top5_items:.3f}  "
            f"({metrics.queries} queries of {metrics.classes} classes, {metrics.gallery} gallery images, "
            f"{metrics.queries_without_class} queries without a gallery class)"
        ))
        if json_path:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            figures = {"embedder": model.name, "dim": model.dim, **metrics.as_dict()}
            json_path.write_text(json.dumps(figures, indent=2) + "\n")
            self.stdout.write(f"wrote {json_path}")
