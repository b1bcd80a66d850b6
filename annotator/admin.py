"""The app's models in Django's admin, which serves superusers only (``annotator.admin_site``)."""
from __future__ import annotations

from django.contrib import admin
from django.db import transaction

from annotator import models
from annotator.services import outbox


class TakesPointsOutOfTheSearchSpace:
    """Deleting here bypasses the labelling services: queue the removal of the affected boxes'
    points through the outbox first, or the search space keeps suggesting deleted crops."""

    def affected_boxes(self, queryset) -> list[int]:
        raise NotImplementedError

    def delete_model(self, request, obj) -> None:
        with transaction.atomic():
            outbox.forget_boxes(box_ids=self.affected_boxes(type(obj).objects.filter(pk=obj.pk)))
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset) -> None:
        with transaction.atomic():
            outbox.forget_boxes(box_ids=self.affected_boxes(queryset))
            super().delete_queryset(request, queryset)


@admin.register(models.Company)
class CompanyAdmin(admin.ModelAdmin):
    list_display = ["name", "model_set", "auto_accept_threshold"]
    list_editable = ["auto_accept_threshold"]
    search_fields = ["name"]


@admin.register(models.Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "company"]
    list_filter = ["company"]
    autocomplete_fields = ["company"]


@admin.register(models.Store)
class StoreAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "company"]
    list_filter = ["company"]
    search_fields = ["code", "name"]


@admin.register(models.Camera)
class CameraAdmin(admin.ModelAdmin):
    list_display = ["code", "store"]
    list_filter = ["store__company"]
    search_fields = ["code"]


@admin.register(models.Shelf)
class ShelfAdmin(admin.ModelAdmin):
    list_display = ["code", "camera"]
    search_fields = ["code"]


@admin.register(models.Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "company"]
    list_filter = ["company"]
    search_fields = ["name"]


class ProductImageInline(admin.TabularInline):
    model = models.ProductImage
    extra = 0
    readonly_fields = ["checksum"]


@admin.register(models.Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["name", "sku", "category", "company"]
    list_filter = ["company", "category"]
    search_fields = ["name", "sku"]
    inlines = [ProductImageInline]


@admin.register(models.Frame)
class FrameAdmin(TakesPointsOutOfTheSearchSpace, admin.ModelAdmin):
    list_display = ["id", "camera", "shelf", "captured_at", "status"]
    list_filter = ["status", "company"]
    readonly_fields = ["checksum", "width", "height", "created_at", "updated_at"]
    search_fields = ["source_uri", "image"]

    def affected_boxes(self, queryset) -> list[int]:
        return list(models.Box.objects.filter(frame__in=queryset).values_list("pk", flat=True))


@admin.register(models.Box)
class BoxAdmin(TakesPointsOutOfTheSearchSpace, admin.ModelAdmin):
    list_display = ["id", "frame", "x", "y", "w", "h", "source", "detector_score"]
    list_filter = ["source"]
    raw_id_fields = ["frame"]

    def affected_boxes(self, queryset) -> list[int]:
        return list(queryset.values_list("pk", flat=True))


@admin.register(models.Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ["id", "box", "pipeline_version", "product", "score", "created_at"]
    list_filter = ["pipeline_version"]
    raw_id_fields = ["box", "product"]


@admin.register(models.Label)
class LabelAdmin(TakesPointsOutOfTheSearchSpace, admin.ModelAdmin):
    list_display = ["id", "box", "product", "action", "annotator", "is_current", "created_at"]
    list_filter = ["action", "is_current"]
    raw_id_fields = ["box", "product", "suggested_product"]

    def affected_boxes(self, queryset) -> list[int]:
        # A box whose current label goes is left without one: its point goes too. Older labels are history only.
        return list(queryset.filter(is_current=True).values_list("box_id", flat=True))

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # history is never overwritten


@admin.register(models.PipelineVersion)
class PipelineVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "embedder", "detector", "created_at"]


@admin.register(models.ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "path", "created_at"]
    list_filter = ["kind"]


@admin.register(models.SearchSpaceOutbox)
class SearchSpaceOutboxAdmin(admin.ModelAdmin):
    list_display = ["id", "company", "box_key", "operation", "attempts", "delivered_at", "last_error"]
    list_filter = ["operation", "delivered_at"]


@admin.register(models.IngestedObject)
class IngestedObjectAdmin(admin.ModelAdmin):
    list_display = ["source_uri", "outcome", "frame", "seen_at"]
    list_filter = ["outcome"]
    search_fields = ["source_uri"]
