"""The domain: who owns what (Company > Store > Camera > Shelf), what the cameras saw (Frame, Box),
what the pipeline suggested (Prediction) and what people decided (Label).

Invariants live in the database as constraints, not only in Python. Every row reachable by a user
hangs off one Company, and every read is scoped by it (see ``selectors``).
"""
from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q


class Company(models.Model):
    name = models.CharField(max_length=200, unique=True)
    model_set = models.ForeignKey(
        "ModelSet", on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        help_text="The promoted model set pre-labelling uses; empty: the base (ImageNet) set")
    auto_accept_threshold = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Pre-labelling pre-confirms a box whose calibrated probability is at or above this "
                  "(0..1); empty: auto-accept is off. Uncalibrated scores are never auto-accepted.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "companies"
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(auto_accept_threshold__isnull=True)
                | Q(auto_accept_threshold__gte=0.0, auto_accept_threshold__lte=1.0),
                name="company_auto_accept_threshold_0_1"),
        ]

    def __str__(self) -> str:
        return self.name


class MembershipRole(models.TextChoices):
    ANNOTATOR = "annotator", "Annotator"  # labels frames
    QA_LEAD = "qa_lead", "QA lead"  # labels and reviews labels
    MANAGER = "manager", "Manager"  # reads reports, labels nothing
    ADMIN = "admin", "Admin"  # all of the above, and promotes model sets


class Membership(models.Model):
    """A user works for a company in one role; everything they see is scoped to their companies, and
    what they may do there is their role in that company (``annotator.permissions``): a manager of
    one company may be an annotator of another."""

    Role = MembershipRole

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "company"], name="unique_membership"),
            models.CheckConstraint(condition=Q(role__in=MembershipRole.values), name="membership_role_known"),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.company} ({self.role})"


class Store(models.Model):
    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="stores")
    code = models.CharField(max_length=100)
    name = models.CharField(max_length=200, blank=True)
    annotation_interval_hours = models.PositiveIntegerField(
        default=72, help_text="Each camera gets one frame to label per this many hours")

    class Meta:
        ordering = ["company", "code"]
        constraints = [models.UniqueConstraint(fields=["company", "code"], name="unique_store_code")]

    def __str__(self) -> str:
        return self.name or self.code


class Camera(models.Model):
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="cameras")
    code = models.CharField(max_length=100)

    class Meta:
        ordering = ["store", "code"]
        constraints = [models.UniqueConstraint(fields=["store", "code"], name="unique_camera_code")]

    def __str__(self) -> str:
        return self.code


class Shelf(models.Model):
    """One fixture, seen by one camera: the unit whose history realgram reads."""

    camera = models.ForeignKey(Camera, on_delete=models.CASCADE, related_name="shelves")
    code = models.CharField(max_length=100)

    class Meta:
        verbose_name_plural = "shelves"
        ordering = ["camera", "code"]
        constraints = [models.UniqueConstraint(fields=["camera", "code"], name="unique_shelf_code")]

    def __str__(self) -> str:
        return self.code


class Category(models.Model):
    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="categories")
    name = models.CharField(max_length=200)

    class Meta:
        verbose_name_plural = "categories"
        ordering = ["company", "name"]
        constraints = [models.UniqueConstraint(fields=["company", "name"], name="unique_category_name")]

    def __str__(self) -> str:
        return self.name


class Product(models.Model):
    """A catalogue entry. ``sku`` is the company's own identifier."""

    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="products")
    sku = models.CharField(max_length=100)
    name = models.CharField(max_length=300)
    category = models.ForeignKey(Category, on_delete=models.SET_NULL, null=True, blank=True, related_name="products")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["company", "name"]
        constraints = [models.UniqueConstraint(fields=["company", "sku"], name="unique_product_sku")]
        indexes = [models.Index(fields=["company", "name"])]

    def __str__(self) -> str:
        return self.name


class ProductImage(models.Model):
    """A reference image of a product (catalogue photo or a chosen crop)."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="images")
    image = models.ImageField(upload_to="products/%Y/%m/")
    checksum = models.CharField(max_length=64)
    is_primary = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["product", "checksum"], name="unique_product_image")]


class Frame(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        PROCESSING = "processing", "processing"
        READY = "ready", "ready"
        FAILED = "failed", "failed"
        LABELLED = "labelled", "labelled"
        SKIPPED = "skipped", "skipped"

    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="frames")
    camera = models.ForeignKey(Camera, on_delete=models.CASCADE, related_name="frames")
    shelf = models.ForeignKey(Shelf, on_delete=models.CASCADE, related_name="frames")
    image = models.ImageField(upload_to="frames/%Y/%m/%d/")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    captured_at = models.DateTimeField(null=True, blank=True, db_index=True)
    checksum = models.CharField(max_length=64, help_text="SHA-256 of the image bytes")
    source_uri = models.CharField(max_length=1024, blank=True, help_text="Where the frame came from")
    original_name = models.CharField(
        max_length=255, blank=True,
        help_text="The name the image came with (a COCO file_name, an upload's): it orders frames without a "
                  "capture time; never a stored path")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    status_reason = models.TextField(blank=True)
    confidence = models.FloatField(
        null=True, blank=True,
        help_text="Mean margin between each box's first and second candidate: low means the pipeline hesitated")
    scheduled = models.BooleanField(default=False, db_index=True, help_text="Picked by the schedule for labelling")
    leased_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                  related_name="leased_frames")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    prelabel_token = models.CharField(
        max_length=200, blank=True,
        help_text="The pre-labelling run that holds the frame (empty: none); a run whose token is gone writes nothing")
    prelabel_claimed_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When that run claimed the frame, or, without a run, when its task could not be sent: the stall "
                  "sweep sends again a frame whose claim is older than PRELABEL_STALL_MINUTES")
    quality = models.JSONField(
        null=True, blank=True,
        help_text="The quality gate's decision ({passed, forced, reasons, scores, details}); null: not assessed. "
                  "A QA lead forcing a skipped frame through sets forced, and the gate is not run on it again")
    quality_signature = models.JSONField(
        null=True, blank=True,
        help_text="The gate's signature of an accepted frame (sharpness, colour/texture grid), which the "
                  "camera's later frames are compared with")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["camera", "captured_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["company", "checksum"], name="unique_frame_checksum"),
            models.UniqueConstraint(
                fields=["source_uri"], condition=~Q(source_uri=""), name="unique_frame_source_uri"
            ),
        ]
        indexes = [models.Index(fields=["shelf", "captured_at"]), models.Index(fields=["camera", "captured_at"])]

    def __str__(self) -> str:
        return f"{self.camera} @ {self.captured_at or self.image.name}"


class IngestedObject(models.Model):
    """Every camera object ingestion has looked at, so the next poll skips it without downloading
    it again, unless the object changed (another ETag)."""

    class Outcome(models.TextChoices):
        REGISTERED = "registered", "registered"
        DUPLICATE = "duplicate", "same image as another frame"
        IGNORED = "ignored", "key does not follow the convention"
        UNREADABLE = "unreadable", "not a readable image"

    source_uri = models.CharField(max_length=1024, unique=True)
    etag = models.CharField(max_length=200, blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    frame = models.ForeignKey(Frame, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    seen_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.source_uri} ({self.outcome})"


class Box(models.Model):
    """A product box on a frame, in pixels of the stored image (x, y = top-left corner)."""

    class Source(models.TextChoices):
        DETECTOR = "detector", "detector"
        MANUAL = "manual", "manual"
        IMPORTED = "imported", "imported"

    frame = models.ForeignKey(Frame, on_delete=models.CASCADE, related_name="boxes")
    x = models.FloatField()
    y = models.FloatField()
    w = models.FloatField()
    h = models.FloatField()
    detector_score = models.FloatField(null=True, blank=True)
    source = models.CharField(max_length=20, choices=Source.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["frame", "id"]
        verbose_name_plural = "boxes"
        constraints = [
            models.CheckConstraint(
                condition=Q(x__gte=0) & Q(y__gte=0) & Q(w__gt=0) & Q(h__gt=0), name="box_positive_geometry"
            ),
        ]

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.w, self.h)

    def __str__(self) -> str:
        return f"box {self.pk} on frame {self.frame_id}"


class BoxEmbedding(models.Model):
    """A box's crop as one embedder saw it (float16 bytes), kept from pre-labelling so tracking
    compares the next frame's crops with it without decoding this frame again."""

    box = models.ForeignKey(Box, on_delete=models.CASCADE, related_name="embeddings")
    embedder = models.ForeignKey("ModelVersion", on_delete=models.PROTECT, related_name="+")
    vector = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["box", "embedder"], name="unique_box_embedding")]


class ModelVersion(models.Model):
    """A trained model the pipeline can load: an embedder or a detector."""

    class Kind(models.TextChoices):
        EMBEDDER = "embedder", "embedder"
        DETECTOR = "detector", "detector"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    name = models.CharField(max_length=200)
    path = models.CharField(max_length=1024, blank=True)
    config = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "name"], name="unique_model_version")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


class ModelSet(models.Model):
    """A folder of models a company's pipeline runs with (``inference.model_set``), written by a
    learning round, and the state of its search-space collection. The base set is no row: a
    company without a promoted set is served by the configured (ImageNet) models."""

    class IndexState(models.TextChoices):
        NONE = "none", "not indexed"
        BUILDING = "building", "building"
        READY = "ready", "ready"

    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="model_sets")
    name = models.CharField(max_length=200)
    folder = models.CharField(max_length=1024)
    embedder = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    version = models.CharField(max_length=20, help_text="The pipeline it serves: v0 to v3, by the stages on")
    manifest = models.JSONField(default=dict, blank=True)
    index_state = models.CharField(max_length=20, choices=IndexState.choices, default=IndexState.NONE)
    index_cursor = models.BigIntegerField(default=0, help_text="Labelled boxes up to this id are in the collection")
    indexed_boxes = models.PositiveIntegerField(default=0)
    total_boxes = models.PositiveIntegerField(default=0)
    index_error = models.TextField(blank=True)
    index_heartbeat_at = models.DateTimeField(null=True, blank=True)
    promoted_at = models.DateTimeField(null=True, blank=True)
    rolled_back_at = models.DateTimeField(null=True, blank=True)
    previous = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="The set it replaced when promoted (empty: the base set); a rollback returns to it")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["company", "-created_at"]
        constraints = [models.UniqueConstraint(fields=["company", "name"], name="unique_model_set_name")]

    def __str__(self) -> str:
        return self.name

    @property
    def index_progress(self) -> float:
        if self.index_state == self.IndexState.READY:
            return 1.0
        return self.indexed_boxes / self.total_boxes if self.total_boxes else 0.0


class LearningRound(models.Model):
    """One round of a company's learning loop, with its progress while it runs and its gate figures
    (candidate and promoted side by side) once it has run."""

    class State(models.TextChoices):
        RUNNING = "running", "running"
        INDEXING = "indexing", "re-indexing"
        PROMOTED = "promoted", "promoted"
        REJECTED = "rejected", "not promoted"
        FAILED = "failed", "failed"

    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="learning_rounds")
    state = models.CharField(max_length=20, choices=State.choices, default=State.RUNNING)
    stage = models.CharField(max_length=40, blank=True)
    progress = models.FloatField(default=0.0)
    cut_off = models.DateTimeField(null=True, blank=True)
    budget_minutes = models.FloatField()
    command = models.TextField(blank=True)
    baseline = models.ForeignKey(ModelSet, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
                                 help_text="The promoted set the candidate was gated against (empty: base)")
    candidate = models.ForeignKey(ModelSet, on_delete=models.SET_NULL, null=True, blank=True, related_name="rounds")
    report = models.JSONField(default=dict, blank=True)
    message = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["company", "-started_at"]
        constraints = [models.UniqueConstraint(fields=["company"], condition=Q(state__in=["running", "indexing"]),
                                               name="one_running_round_per_company")]


class PipelineVersion(models.Model):
    """One configuration of the pre-labelling pipeline (v0, v1, ...) with the models it ran: the same
    name with another embedder or other hyperparameters is another version."""

    name = models.CharField(max_length=100)
    config_digest = models.CharField(max_length=64, blank=True, help_text="Of the config and the models' names")
    embedder = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    detector = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    model_set = models.ForeignKey(
        ModelSet, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        help_text="The company's model set it ran (empty: the base set)")
    config = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["name", "config_digest"], name="unique_pipeline_version"),
        ]

    def __str__(self) -> str:
        return self.name


class Prediction(models.Model):
    """The pipeline's ranked candidates for a box. ``candidates`` is a list of
    ``{"product_id", "score", "components": {"knn": ..., ...}}``, best first."""

    box = models.ForeignKey(Box, on_delete=models.CASCADE, related_name="predictions")
    pipeline_version = models.ForeignKey(PipelineVersion, on_delete=models.PROTECT, related_name="predictions")
    product = models.ForeignKey(Product, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    score = models.FloatField(null=True, blank=True)
    probability = models.FloatField(
        null=True, blank=True, help_text="Calibrated probability that the top-1 is right (empty: no calibrator)")
    candidates = models.JSONField(default=list)
    auto_accepted = models.BooleanField(
        default=False, help_text="Pre-confirmed: probability above the company's auto-accept threshold")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["box", "pipeline_version"], name="unique_prediction_per_pipeline")
        ]


class Label(models.Model):
    """A person's (or an import's) decision about a box. History is kept: a new decision adds a row
    and retires the previous one (``is_current``), never overwriting it."""

    class Action(models.TextChoices):
        CONFIRMED = "confirmed", "confirmed"
        CORRECTED = "corrected", "corrected"
        ADDED = "added", "added"
        DELETED = "deleted", "deleted"
        IMPORTED = "imported", "imported"
        REVIEWED = "reviewed", "reviewed by QA"  # kept or relabelled by a QA lead
        REMOVED = "removed", "removed by QA"  # not a product, says a QA lead

        @classmethod
        def without_product(cls) -> tuple[str, ...]:
            return (cls.DELETED, cls.REMOVED)

    box = models.ForeignKey(Box, on_delete=models.CASCADE, related_name="labels")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, null=True, blank=True, related_name="labels")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="labels"
    )
    action = models.CharField(max_length=20, choices=Action.choices)
    suggested_product = models.ForeignKey(
        Product, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="The top-1 suggestion shown when the decision was made",
    )
    suggested_by = models.ForeignKey(
        PipelineVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="The pipeline version whose suggestion was shown",
    )
    time_spent_ms = models.PositiveIntegerField(default=0)
    auto_accepted = models.BooleanField(
        default=False, help_text="The decision kept an auto-accepted suggestion (reports count these apart)")
    is_current = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["box", "created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["box"], condition=Q(is_current=True), name="one_current_label_per_box"),
            models.CheckConstraint(
                condition=Q(action__in=["deleted", "removed"]) | Q(product__isnull=False),
                name="label_has_product_unless_deleted"
            ),
        ]


class SearchSpaceOutbox(models.Model):
    """A pending change to the search space. The database is the source of truth; this table is
    how every write reaches Qdrant, retried until delivered."""

    class Operation(models.TextChoices):
        UPSERT = "upsert", "upsert"
        DELETE = "delete", "delete"

    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="+")
    box = models.ForeignKey(Box, on_delete=models.SET_NULL, null=True, related_name="+")
    box_key = models.BigIntegerField(help_text="Box id, kept after the box is deleted")
    operation = models.CharField(max_length=10, choices=Operation.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]
