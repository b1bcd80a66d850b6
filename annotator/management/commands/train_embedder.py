from pathlib import Path

import torch
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from annotator.models import Company
from annotator.services.training_data import labelled_crops
from inference.embedder import EmbedderConfig
from inference.embedder_training import (
    DatasetError,
    LabelledImages,
    TrainingConfig,
    grocery_store_samples,
    half_precision_copy,
    image_folder_samples,
    train_embedder,
)


class Command(BaseCommand):
    help = ("Train an embedder with ArcFace on P x K batches (one company per batch) and save it as a checkpoint "
            "for EMBEDDER_CHECKPOINT. Sources: a GroceryStoreDataset split, an ImageFolder tree, or a company's own "
            "labelled crops.")

    def add_arguments(self, parser):
        parser.add_argument("--out", required=True, type=Path, help="checkpoint to write (.pt)")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--grocery", type=Path, help="GroceryStoreDataset root; labels are fine class ids")
        source.add_argument("--imagefolder", type=Path, help="one folder of images per class")
        source.add_argument("--company", help="the company's own labelled crops (labels are product ids)")
        parser.add_argument("--exclude-sku", action="append", default=[], metavar="SKU",
                            help="with --company: leave out a catch-all product such as other-product (repeatable)")
        parser.add_argument("--split", default="train", help="GroceryStoreDataset split to train on")
        defaults = TrainingConfig()
        parser.add_argument("--backbone", default=defaults.embedder.backbone, help="timm model name")
        parser.add_argument("--init", default=defaults.init, choices=["imagenet-lite0", "none"])
        parser.add_argument("--embedding-dim", type=int, default=defaults.embedder.embedding_dim,
                            help="linear head size; 0 keeps the backbone's pooled features")
        parser.add_argument("--input-size", type=int, default=defaults.embedder.input_size)
        parser.add_argument("--epochs", type=int, default=defaults.epochs)
        parser.add_argument("--max-steps", type=int, help="stop after this many steps")
        parser.add_argument("--p", type=int, default=defaults.p, help="classes per batch")
        parser.add_argument("--k", type=int, default=defaults.k, help="crops per class")
        parser.add_argument("--one-category-per-batch", action="store_true")
        parser.add_argument("--lr", type=float, default=defaults.lr)
        parser.add_argument("--head-lr-scale", type=float, default=defaults.head_lr_scale)
        parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
        parser.add_argument("--train-last-blocks", type=int, help="train only the last N backbone stages (CPU)")
        parser.add_argument("--scale", type=float, default=defaults.arcface_scale, help="ArcFace s")
        parser.add_argument("--margin", type=float, default=defaults.arcface_margin, help="ArcFace m, radians")
        parser.add_argument("--no-augment", action="store_true")
        parser.add_argument("--hflip", action="store_true", help="also mirror crops (off: packaging text)")
        parser.add_argument("--seed", type=int, default=defaults.seed)
        parser.add_argument("--num-workers", type=int, default=defaults.num_workers)
        parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
        parser.add_argument("--name", help="embedder name (default: file stem + weights hash)")
        parser.add_argument("--fp16", type=Path, help="also write a float16 copy of the checkpoint here")
        parser.add_argument("--onnx", type=Path, help="also export the embedder to this .onnx file")

    def company_crops(self, name: str, exclude_skus: list[str]) -> LabelledImages:
        try:
            company = Company.objects.get(name=name)
        except Company.DoesNotExist:
            raise CommandError(f"--company: unknown company {name!r}") from None
        samples = labelled_crops(company=company, cache_dir=settings.VAR_DIR / "cache" / "frames",
                                 exclude_skus=exclude_skus)
        if not samples:
            raise CommandError(f"--company: {name!r} has no labelled crops to train on")
        return LabelledImages(samples, classes=[])

    def handle(self, *args, **options):
        out = options["out"]
        try:
            if options["grocery"]:
                data = grocery_store_samples(options["grocery"], options["split"])
            elif options["company"]:
                data = self.company_crops(options["company"], options["exclude_sku"])
            else:
                data = image_folder_samples(options["imagefolder"])
        except DatasetError as error:
            raise CommandError(str(error)) from None
        if options["threads"]:
            torch.set_num_threads(options["threads"])
        try:
            config = TrainingConfig(
                embedder=EmbedderConfig(backbone=options["backbone"], embedding_dim=options["embedding_dim"] or None,
                                        input_size=options["input_size"]),
                init=options["init"], epochs=options["epochs"], max_steps=options["max_steps"],
                p=options["p"], k=options["k"], one_category_per_batch=options["one_category_per_batch"],
                lr=options["lr"], head_lr_scale=options["head_lr_scale"], weight_decay=options["weight_decay"],
                train_last_blocks=options["train_last_blocks"], arcface_scale=options["scale"],
                arcface_margin=options["margin"], augment=not options["no_augment"], hflip=options["hflip"],
                seed=options["seed"], num_workers=options["num_workers"],
            )
            report = train_embedder(data.samples, config, out, name=options["name"], classes=data.classes or None,
                                    log=self.stdout.write)
        except ValueError as error:
            raise CommandError(f"{out}: {error}") from None
        self.stdout.write(self.style.SUCCESS(
            f"wrote {report.checkpoint} ({report.name}): {report.samples} crops, {report.classes} classes, "
            f"{report.epochs} epochs, {report.steps} steps in {report.seconds:.0f} s, "
            f"final loss {report.loss_history[-1]:.3f}"
        ))
        if options["fp16"]:
            self.stdout.write(f"wrote {half_precision_copy(out, options['fp16'])} (float16)")
        if options["onnx"]:
            from inference.embedder import load_embedder
            from inference.onnx_embedder import export_onnx

            self.stdout.write(f"wrote {export_onnx(load_embedder(out), options['onnx'])}")
