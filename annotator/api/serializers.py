from __future__ import annotations

from rest_framework import serializers

from annotator.models import Frame, Product
from annotator.selectors import BoxView


class ProductSerializer(serializers.ModelSerializer):
    category = serializers.CharField(source="category.name", default=None, read_only=True)

    class Meta:
        model = Product
        fields = ["id", "sku", "name", "category"]


class CandidateSerializer(serializers.Serializer):
    product_id = serializers.IntegerField()
    score = serializers.FloatField()
    components = serializers.DictField(child=serializers.FloatField())


class BoxViewSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="box.pk")
    bbox = serializers.ListField(child=serializers.FloatField(), source="box.bbox")
    source = serializers.CharField(source="box.source")
    detector_score = serializers.FloatField(source="box.detector_score", allow_null=True)
    suggestion = ProductSerializer(allow_null=True)
    candidates = serializers.SerializerMethodField()
    label = serializers.SerializerMethodField()

    def get_candidates(self, view: BoxView) -> list[dict]:
        return view.prediction.candidates if view.prediction else []

    def get_label(self, view: BoxView) -> dict | None:
        if view.label is None:
            return None
        return {"product_id": view.label.product_id, "action": view.label.action}


class FrameSerializer(serializers.ModelSerializer):
    store = serializers.CharField(source="camera.store.code", read_only=True)
    camera = serializers.CharField(source="camera.code", read_only=True)
    shelf = serializers.CharField(source="shelf.code", read_only=True)
    image_url = serializers.SerializerMethodField()

    class Meta:
        model = Frame
        fields = ["id", "store", "camera", "shelf", "captured_at", "width", "height", "status", "status_reason", "image_url"]

    def get_image_url(self, frame: Frame) -> str:
        return frame.image.url


class FrameDetailSerializer(FrameSerializer):
    boxes = serializers.SerializerMethodField()

    class Meta(FrameSerializer.Meta):
        fields = [*FrameSerializer.Meta.fields, "boxes"]

    def get_boxes(self, frame: Frame) -> list[dict]:
        return BoxViewSerializer(self.context["boxes"], many=True).data
