from __future__ import annotations

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotator.converters import MAX_ID
from annotator.models import Frame, Label, Product
from annotator import selectors
from annotator.selectors import BoxView


class ProductSerializer(serializers.ModelSerializer):
    category = serializers.CharField(source="category.name", default=None, allow_null=True, read_only=True)
    thumbnail_url = serializers.SerializerMethodField()

    class Meta:
        model = Product
        fields = ["id", "sku", "name", "category", "thumbnail_url"]

    def get_thumbnail_url(self, product: Product) -> str | None:
        # images are prefetched by the selectors, primary first
        images = list(product.images.all())
        return images[0].image.url if images else None


class CandidateSerializer(serializers.Serializer):
    product_id = serializers.IntegerField()
    score = serializers.FloatField()
    components = serializers.DictField(child=serializers.FloatField())


class BoxLabelSerializer(serializers.Serializer):
    product_id = serializers.IntegerField(allow_null=True, help_text="null: the box shows no product")
    action = serializers.ChoiceField(choices=Label.Action.choices)


class BoxViewSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="box.pk")
    bbox = serializers.ListField(child=serializers.FloatField(), source="box.bbox")
    source = serializers.CharField(source="box.source")
    detector_score = serializers.FloatField(source="box.detector_score", allow_null=True)
    prediction_id = serializers.IntegerField(
        source="prediction.pk", default=None, allow_null=True, read_only=True,
        help_text="the prediction whose suggestion and candidates these are; send it back with a submit "
                  "(shown_predictions)")
    suggestion = ProductSerializer(allow_null=True)
    probability = serializers.SerializerMethodField(
        help_text="calibrated probability that the suggestion is right; uncalibrated: the raw score clipped to 0..1")
    calibrated = serializers.SerializerMethodField(help_text="false: probability is the raw score clipped")
    auto_accepted = serializers.SerializerMethodField(help_text="pre-confirmed above the auto-accept threshold")
    candidates = serializers.SerializerMethodField()
    label = serializers.SerializerMethodField()

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_probability(self, view: BoxView) -> float | None:
        prediction = view.prediction
        if prediction is None:
            return None
        if prediction.probability is not None:
            return float(prediction.probability)
        if prediction.score is None:
            return None
        return min(1.0, max(0.0, float(prediction.score)))

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_calibrated(self, view: BoxView) -> bool:
        return view.prediction is not None and view.prediction.probability is not None

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_auto_accepted(self, view: BoxView) -> bool:
        return bool(view.prediction is not None and view.prediction.auto_accepted)

    @extend_schema_field(CandidateSerializer(many=True))
    def get_candidates(self, view: BoxView) -> list[dict]:
        return view.prediction.candidates if view.prediction else []

    @extend_schema_field(BoxLabelSerializer(allow_null=True))
    def get_label(self, view: BoxView) -> dict | None:
        if view.label is None:
            return None
        return {"product_id": view.label.product_id, "action": view.label.action}


class QualitySerializer(serializers.Serializer):
    """The quality gate's decision about a frame (``inference.quality_gate.QualityReport``)."""

    passed = serializers.BooleanField(help_text="no check gave a reason, or a QA lead forced it through")
    forced = serializers.BooleanField(help_text="a QA lead or admin sent the skipped frame through without the gate")
    reasons = serializers.ListField(child=serializers.CharField(),
                                    help_text="blur, dark, bright, glare, obstructed, few_detections")
    scores = serializers.DictField(child=serializers.FloatField(), help_text="each check's score, by name")
    details = serializers.DictField(child=serializers.CharField(), help_text="each reason, in words")


class FrameSerializer(serializers.ModelSerializer):
    store = serializers.CharField(source="camera.store.code", read_only=True)
    store_id = serializers.IntegerField(source="camera.store_id", read_only=True)
    leased_by = serializers.CharField(source="leased_by.username", default=None, allow_null=True, read_only=True)
    camera = serializers.CharField(source="camera.code", read_only=True)
    shelf = serializers.CharField(source="shelf.code", read_only=True)
    image_url = serializers.SerializerMethodField()
    quality = serializers.SerializerMethodField(
        help_text="the quality gate's decision; null when the gate has not judged the frame")

    class Meta:
        model = Frame
        fields = ["id", "store", "store_id", "camera", "shelf", "captured_at", "width", "height", "status",
                  "status_reason", "scheduled", "leased_by", "lease_expires_at", "image_url", "quality"]

    def get_image_url(self, frame: Frame) -> str:
        return frame.image.url

    @extend_schema_field(QualitySerializer(allow_null=True))
    def get_quality(self, frame: Frame) -> dict | None:
        quality = frame.quality
        if not isinstance(quality, dict):
            return None
        return {"passed": bool(quality.get("passed", False)), "forced": bool(quality.get("forced", False)),
                "reasons": list(quality.get("reasons", [])), "scores": dict(quality.get("scores", {})),
                "details": dict(quality.get("details", {}))}


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text='send as "Authorization: Token <token>"')


@extend_schema_field(OpenApiTypes.INT)
class UsersShelfField(serializers.PrimaryKeyRelatedField):
    """A shelf of the user's companies; another company's reads as one that does not exist."""

    def get_queryset(self):
        return selectors.shelves_for(self.context["request"].user)


class FrameUploadSerializer(serializers.Serializer):
    image = serializers.FileField(help_text="the shelf photo, JPEG or PNG")
    shelf = UsersShelfField(help_text="the id of the shelf it shows")
    captured_at = serializers.DateTimeField(required=False, allow_null=True, default=None)

    def validate_image(self, image):
        limit = settings.FRAME_UPLOAD_MAX_BYTES
        if image.size > limit:
            raise serializers.ValidationError(f"the image is {image.size} bytes; the limit is {limit}")
        return image


class FrameDetailSerializer(FrameSerializer):
    boxes = serializers.SerializerMethodField()
    products = serializers.SerializerMethodField()
    auto_accept_threshold = serializers.FloatField(
        source="company.auto_accept_threshold", read_only=True, allow_null=True,
        help_text="the company's auto-accept probability threshold; null: none chosen yet")

    class Meta(FrameSerializer.Meta):
        fields = [*FrameSerializer.Meta.fields, "boxes", "products", "auto_accept_threshold"]

    @extend_schema_field(BoxViewSerializer(many=True))
    def get_boxes(self, frame: Frame) -> list[dict]:
        return BoxViewSerializer(self.context["boxes"], many=True).data

    @extend_schema_field(ProductSerializer(many=True))
    def get_products(self, frame: Frame) -> list[dict]:
        """Every product the boxes mention, with its thumbnail, so a client needs no more requests."""
        return ProductSerializer(selectors.products_of_boxes(self.context["boxes"]), many=True).data


class BoxAnswerSerializer(serializers.Serializer):
    id = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False,
                                  help_text="an existing box; leave out for a new box")
    bbox = serializers.ListField(child=serializers.FloatField(), min_length=4, max_length=4, required=False,
                                 help_text="a new box: x, y, w, h in pixels")
    product_id = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False, allow_null=True)
    deleted = serializers.BooleanField(default=False)
    time_spent_ms = serializers.IntegerField(min_value=0, max_value=3_600_000, default=0)

    def validate(self, data: dict) -> dict:
        if "id" not in data and "bbox" not in data:
            raise serializers.ValidationError("each answer needs the id of a box or the bbox of a new one")
        return data


class SubmitSerializer(serializers.Serializer):
    boxes = BoxAnswerSerializer(many=True, max_length=2000)
    shown_predictions = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), max_length=2000, required=False,
        help_text="What the client showed: the prediction_id of every box of the frame as it loaded it (those "
                  "not null; [] when it showed no suggestion). Each answer is judged confirmed or corrected "
                  "against those suggestions; if the frame was pre-labelled again since (its current "
                  "predictions are others), the submit is refused with 409 and the client reloads the frame. "
                  "Left out (a client that shows no suggestions), answers are judged against the current ones.")


class SubmitReportSerializer(serializers.Serializer):
    frame_id = serializers.IntegerField()
    confirmed = serializers.IntegerField()
    corrected = serializers.IntegerField()
    added = serializers.IntegerField()
    deleted = serializers.IntegerField()


class ProductCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=300)
    sku = serializers.CharField(max_length=100, help_text="the company's own identifier; unique in the company")
    category = serializers.CharField(max_length=200, required=False, allow_null=True, allow_blank=True, default=None,
                                     help_text="the category's name (created when the company has none of that name)")
    company = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False, default=None,
                                       help_text="the company's id; needed only by a user who labels for several")


class ProductSearchQuerySerializer(serializers.Serializer):
    q = serializers.CharField(required=False, default="", allow_blank=True, trim_whitespace=True,
                              help_text="part of the name, or the start of the sku")
    store = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False, default=None,
                                     help_text="put this store's assortment first")
    limit = serializers.IntegerField(min_value=1, max_value=50, required=False, default=20)

    def validate_q(self, query: str) -> str:
        return query[:100]


class ReportQuerySerializer(serializers.Serializer):
    by = serializers.ChoiceField(choices=list(selectors.REPORT_GROUPS), default="day")
    start = serializers.DateField(required=False)
    end = serializers.DateField(required=False)

    def validate(self, data: dict) -> dict:
        if data.get("start") and data.get("end") and data["start"] > data["end"]:
            raise serializers.ValidationError(f"start {data['start']} is after end {data['end']}")
        return data


class ConfirmRateRowSerializer(serializers.Serializer):
    group = serializers.CharField(help_text="the day, week, pipeline, store, camera, category, product or annotator")
    boxes = serializers.IntegerField()
    suggested = serializers.IntegerField(help_text="boxes that had a suggestion: confirmed + corrected")
    confirmed = serializers.IntegerField()
    corrected = serializers.IntegerField()
    added = serializers.IntegerField()
    deleted = serializers.IntegerField()
    confirm_rate = serializers.FloatField(allow_null=True, help_text="confirmed / suggested")
    changed_later = serializers.IntegerField(help_text="confirmed suggestions a later decision (QA) replaced")
    changed_later_rate = serializers.FloatField(allow_null=True)
    seconds_per_box = serializers.FloatField(allow_null=True)
    boxes_per_hour = serializers.FloatField(allow_null=True)
    auto_accepted = serializers.IntegerField(
        help_text="auto-accepted suggestions kept on submit; counted apart, not in confirmed, boxes or confirm_rate")
    reviewed = serializers.IntegerField(help_text="auto-accepted boxes a QA lead reviewed afterwards")

    class Meta:
        fields = ["group", "boxes", "suggested", "confirmed", "corrected", "added", "deleted", "confirm_rate",
                  "changed_later", "changed_later_rate", "seconds_per_box", "boxes_per_hour", "auto_accepted",
                  "reviewed"]


class SuspiciousProductSerializer(serializers.Serializer):
    product = ProductSerializer()
    crops = serializers.IntegerField()
    suspicious = serializers.IntegerField(help_text="labelled crops that look like another product")
    share = serializers.FloatField()


class ConfusablePairSerializer(serializers.Serializer):
    a = ProductSerializer()
    b = ProductSerializer()
    mutual_neighbours = serializers.IntegerField(help_text="crops of a and of b that are each other's nearest")


class LabelNoiseReportSerializer(serializers.Serializer):
    products = SuspiciousProductSerializer(many=True)
    pairs = serializers.SerializerMethodField()
    unscored = serializers.IntegerField(help_text="labelled crops without a stored embedding, left out")

    @extend_schema_field(ConfusablePairSerializer(many=True))
    def get_pairs(self, report) -> list[dict]:
        return ConfusablePairSerializer([{"a": a, "b": b, "mutual_neighbours": n} for a, b, n in report.pairs],
                                        many=True).data


class ReviewSerializer(serializers.Serializer):
    box_ids = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=MAX_ID), min_length=1,
                                    max_length=1000)
    action = serializers.ChoiceField(choices=["relabel", "remove", "ok"])
    product_id = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False, allow_null=True)


class ReviewReportSerializer(serializers.Serializer):
    reviewed = serializers.IntegerField()
    changed = serializers.IntegerField(help_text="boxes whose product changed (or that were removed)")


class LabelHistorySerializer(serializers.Serializer):
    action = serializers.CharField()
    product_id = serializers.IntegerField(allow_null=True)
    product = serializers.CharField(source="product.name", default=None, allow_null=True)
    by = serializers.CharField(source="annotator.username", default=None, allow_null=True)
    at = serializers.DateTimeField(source="created_at")
    is_current = serializers.BooleanField()


# What the errors look like, for the schema only (annotator.api.schema): every error but a field's
# is {"detail": ...}; a request with wrong fields gets, per field, what is wrong with it.
class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


class ValidationErrorSerializer(serializers.Serializer):
    """{"detail": ...} for the request as a whole, or the fields' problems: per field a list of
    messages (or, for a field of a list or of a nested object, its items' or fields' problems), those
    of no one field under non_field_errors. Described by annotator.api.schema.ValidationErrorSchema."""
