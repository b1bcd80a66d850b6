"""Factories for the domain. Images are drawn, not loaded from files."""
from __future__ import annotations

import io

import factory
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from PIL import Image, ImageDraw

from annotator import models

PALETTE = [(220, 40, 40), (40, 160, 60), (40, 80, 220), (230, 200, 30), (150, 60, 170), (30, 180, 190)]


def shelf_image(size: tuple[int, int] = (320, 160), blocks: list[tuple[tuple[int, int, int, int], int]] | None = None,
                fmt: str = "JPEG") -> bytes:
    """A synthetic shelf: coloured, patterned products at the given (x, y, w, h) with a palette index."""
    image = Image.new("RGB", size, (200, 190, 170))
    draw = ImageDraw.Draw(image)
    for (x, y, w, h), colour in blocks or []:
        fill = PALETTE[colour % len(PALETTE)]
        draw.rectangle([x, y, x + w - 1, y + h - 1], fill=fill)
        # A pattern per colour so that crops differ in texture, not only in colour.
        for k in range(0, w, 4 + colour):
            draw.line([x + k, y, x + k, y + h - 1], fill=(255 - fill[0], 255 - fill[1], 255 - fill[2]))
    buffer = io.BytesIO()
    image.save(buffer, fmt, quality=95)
    return buffer.getvalue()


class CompanyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Company
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"company-{n}")


class StoreFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Store

    company = factory.SubFactory(CompanyFactory)
    code = factory.Sequence(lambda n: f"store-{n}")


class CameraFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Camera

    store = factory.SubFactory(StoreFactory)
    code = factory.Sequence(lambda n: f"cam-{n}")


class ShelfFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Shelf

    camera = factory.SubFactory(CameraFactory)
    code = factory.Sequence(lambda n: f"shelf-{n}")


class CategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Category

    company = factory.SubFactory(CompanyFactory)
    name = factory.Sequence(lambda n: f"category-{n}")


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Product

    company = factory.SubFactory(CompanyFactory)
    sku = factory.Sequence(lambda n: f"sku-{n}")
    name = factory.Sequence(lambda n: f"Product {n}")


class FrameFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Frame

    class Params:
        blocks = None

    shelf = factory.SubFactory(ShelfFactory)
    camera = factory.SelfAttribute("shelf.camera")
    company = factory.SelfAttribute("shelf.camera.store.company")
    width = 320
    height = 160
    checksum = factory.Sequence(lambda n: f"{n:064x}")
    status = models.Frame.Status.QUEUED
    image = factory.LazyAttribute(
        lambda o: ContentFile(shelf_image((o.width, o.height), o.blocks), name="frame.jpg")
    )


class BoxFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Box

    frame = factory.SubFactory(FrameFactory)
    x = 10.0
    y = 10.0
    w = 40.0
    h = 60.0
    source = models.Box.Source.DETECTOR
    detector_score = 0.9


class UserFactory(factory.django.DjangoModelFactory):
    """A user; with ``company``, a member of it in ``role`` (an annotator unless told). Roles belong
    to memberships, so a user made without a company has none."""

    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user-{n}")
    password = factory.django.Password("correct-horse-battery")

    # ``company`` before ``role``: post-generation hooks run in the order they are declared.
    @factory.post_generation
    def company(self, create, extracted, **kwargs):
        if create and extracted is not None:
            models.Membership.objects.create(user=self, company=extracted, role=models.Membership.Role.ANNOTATOR)

    @factory.post_generation
    def role(self, create, extracted, **kwargs):
        if create and extracted is not None:
            if extracted not in models.Membership.Role.values:
                raise ValueError(f"unknown role {extracted!r}")
            self.memberships.update(role=extracted)


class PipelineVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.PipelineVersion
        django_get_or_create = ("name", "config_digest")

    name = factory.Sequence(lambda n: f"v{n}")
    config_digest = "test"


class LabelFactory(factory.django.DjangoModelFactory):
    """A decision about a box; ``created_at`` may be given (it is set after the row is made, since
    the model stamps it)."""

    class Meta:
        model = models.Label
        skip_postgeneration_save = True

    box = factory.SubFactory(BoxFactory)
    product = factory.SubFactory(ProductFactory, company=factory.SelfAttribute("..box.frame.company"))
    action = models.Label.Action.CONFIRMED
    time_spent_ms = 0

    @factory.post_generation
    def created_at(self, create, extracted, **kwargs):
        if create and extracted is not None:
            models.Label.objects.filter(pk=self.pk).update(created_at=extracted)
            self.created_at = extracted
