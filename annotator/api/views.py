"""The REST API: everything the workspace does, for any client. Thin: parse, check access through
the selectors (another company's data is a 404), call one service, render."""
from __future__ import annotations

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.exceptions import APIException, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from annotator import selectors
from annotator.api.serializers import (
    ConfirmRateRowSerializer,
    FrameDetailSerializer,
    FrameSerializer,
    FrameUploadSerializer,
    LabelHistorySerializer,
    LabelNoiseReportSerializer,
    ProductCreateSerializer,
    ProductSearchQuerySerializer,
    ProductSerializer,
    ReportQuerySerializer,
    ReviewReportSerializer,
    ReviewSerializer,
    SubmitReportSerializer,
    SubmitSerializer,
    TokenSerializer,
)
from annotator.api.renderers import CSVRenderer
from annotator.api.schema import errors
from annotator.permissions import LabelsFrames, ReadsReports, ReviewsLabels, can_review
from annotator.services import catalog, frames, prelabel_queue, review, users, workspace
from inference.images import ImageError


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def frame_detail_response(request: Request, frame) -> Response:
    boxes = selectors.frame_boxes(frame=frame)
    return Response(FrameDetailSerializer(frame, context={"boxes": boxes, "request": request}).data)


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


class AuthToken(APIView):
    """API tokens for scripts and integrations: POST a username and password for the user's token
    (send it as ``Authorization: Token <key>``); DELETE, authenticated, revokes it. Failed attempts
    count towards the same lockout as the login page; a locked-out username gets a 429 whose
    ``Retry-After`` says how many seconds to wait."""

    throttle_classes: list = []

    def _asks_for_a_token(self) -> bool:
        return getattr(self.request, "method", None) == "POST"  # no request while the schema is generated

    def get_authenticators(self):
        # POST carries its own credentials: no session, so no CSRF token to ask for.
        return [] if self._asks_for_a_token() else super().get_authenticators()

    def get_permissions(self):
        return [AllowAny()] if self._asks_for_a_token() else [IsAuthenticated()]

    @extend_schema(request=AuthTokenSerializer, responses={200: TokenSerializer, **errors(400, 429)}, parameters=[
        OpenApiParameter("Retry-After", int, OpenApiParameter.HEADER, response=[429],
                         description="seconds until the username may try again (none: until unlocked)")])
    def post(self, request: Request) -> Response:
        # Authenticated against Django's own request: django-axes marks a locked-out attempt on it,
        # and its middleware then answers 429, in JSON with Retry-After (``annotator.lockout``).
        credentials = AuthTokenSerializer(data=request.data, context={"request": request._request})
        credentials.is_valid(raise_exception=True)
        return Response({"token": users.issue_api_token(user=credentials.validated_data["user"])})

    @extend_schema(request=None, responses={204: None, **errors(403)})
    def delete(self, request: Request) -> Response:
        users.revoke_api_token(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(get=extend_schema(responses={200: FrameSerializer, **errors(404)}))
class FrameList(generics.ListAPIView):
    """The user's frames; POST uploads a shelf photo (multipart), queued for pre-labelling."""

    serializer_class = FrameSerializer
    permission_classes = [*api_settings.DEFAULT_PERMISSION_CLASSES, LabelsFrames]
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self):
        return selectors.frames_for(self.request.user, status=self.request.query_params.get("status"))

    @extend_schema(request={"multipart/form-data": FrameUploadSerializer},
                   responses={201: FrameSerializer, 200: FrameSerializer, **errors(400, 403, 413)})
    def post(self, request: Request) -> Response:
        """Upload a frame; 201 when new, 200 with the existing frame when the same image was sent before."""
        limit = settings.FRAME_UPLOAD_MAX_BYTES
        if int(request.META.get("CONTENT_LENGTH") or 0) > limit + 64 * 1024:
            # Refused before the body is read: a huge upload costs neither memory nor disk.
            raise PayloadTooLarge(f"the upload is larger than the {limit}-byte limit")
        upload = FrameUploadSerializer(data=request.data, context={"request": request})
        upload.is_valid(raise_exception=True)
        self.check_object_permissions(request, upload.validated_data["shelf"].camera.store)
        image = upload.validated_data["image"]
        try:
            frame, created = frames.upload_frame(
                shelf=upload.validated_data["shelf"], data=image.read(), file_name=image.name or "frame.jpg",
                captured_at=upload.validated_data["captured_at"])
        except ImageError as error:
            raise ValidationError({"image": [f"{image.name}: {error}"]}) from None
        frame = selectors.frame_for(request.user, frame_id=frame.pk)
        return Response(FrameSerializer(frame, context={"request": request}).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class FrameDetail(APIView):
    @extend_schema(responses={200: FrameDetailSerializer, **errors(404)})
    def get(self, request: Request, frame_id: int) -> Response:
        return frame_detail_response(request, selectors.frame_for(request.user, frame_id=frame_id))


class NextFrame(APIView):
    permission_classes = [*api_settings.DEFAULT_PERMISSION_CLASSES, LabelsFrames]

    @extend_schema(request=None, responses={200: FrameDetailSerializer, 204: None, **errors(403)})
    def post(self, request: Request) -> Response:
        """Lease the next scheduled frame to label; 204 when there is none."""
        frame = workspace.lease_next_frame(user=request.user)
        if frame is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return frame_detail_response(request, selectors.frame_for(request.user, frame_id=frame.pk))


class FrameLease(APIView):
    permission_classes = [*api_settings.DEFAULT_PERMISSION_CLASSES, LabelsFrames]

    @extend_schema(request=None, responses={200: FrameDetailSerializer, **errors(403, 404, 409)})
    def post(self, request: Request, frame_id: int) -> Response:
        """Open the frame for labelling; 409 while another annotator holds it, or unless it is ready
        (pre-labelled, not labelled yet)."""
        self.check_object_permissions(request, selectors.frame_for(request.user, frame_id=frame_id))
        try:
            frame = workspace.lease_frame(frame_id=frame_id, user=request.user)
        except workspace.WorkspaceError as error:
            raise Conflict(str(error)) from None
        return frame_detail_response(request, frame)

    @extend_schema(request=None, responses={204: None, **errors(403, 404)})
    def delete(self, request: Request, frame_id: int) -> Response:
        workspace.release_frame(frame=selectors.frame_for(request.user, frame_id=frame_id), user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class FrameForce(APIView):
    @extend_schema(request=None, responses={200: FrameDetailSerializer, **errors(403, 404, 409)})
    def post(self, request: Request, frame_id: int) -> Response:
        """Send a frame the quality gate skipped back to pre-labelling without the gate (QA leads and
        admins of its company); 409 unless it is skipped."""
        frame = selectors.frame_for(request.user, frame_id=frame_id)
        if not can_review(request.user, company=frame.company_id):
            raise PermissionDenied("Forcing a frame through the quality gate is for QA leads and admins.")
        if not prelabel_queue.force_frame(frame=frame):
            raise Conflict(f"frame {frame_id} is {frame.status}, not skipped: there is nothing to force")
        return frame_detail_response(request, selectors.frame_for(request.user, frame_id=frame_id))


class FrameSubmit(APIView):
    permission_classes = [*api_settings.DEFAULT_PERMISSION_CLASSES, LabelsFrames]

    @extend_schema(request=SubmitSerializer, responses={200: SubmitReportSerializer, **errors(400, 403, 404, 409)})
    def post(self, request: Request, frame_id: int) -> Response:
        """Submit an answer for every box of the frame (and any new boxes), in one transaction; 409 when
        the frame is not (or no longer) the user's to label, or was pre-labelled again since it was shown."""
        self.check_object_permissions(request, selectors.frame_for(request.user, frame_id=frame_id))
        payload = SubmitSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        answers = [
            workspace.BoxAnswer(box_id=a.get("id"), bbox=tuple(a["bbox"]) if "bbox" in a else None,
                                product_id=a.get("product_id"), deleted=a["deleted"], time_spent_ms=a["time_spent_ms"])
            for a in payload.validated_data["boxes"]
        ]
        try:
            report = workspace.submit_frame(frame_id=frame_id, user=request.user, answers=answers,
                                            shown_predictions=payload.validated_data.get("shown_predictions"))
        except workspace.InvalidSubmission as error:
            raise ValidationError({"detail": str(error)}) from None
        except workspace.WorkspaceError as error:
            raise Conflict(str(error)) from None
        return Response(SubmitReportSerializer(report).data)


@extend_schema_view(get=extend_schema(responses={200: ProductSerializer, **errors(404)}))
class ProductList(generics.ListAPIView):
    """The user's catalogue; POST adds a product (annotators and up, in a company they label for)."""

    serializer_class = ProductSerializer
    permission_classes = [*api_settings.DEFAULT_PERMISSION_CLASSES, LabelsFrames]

    def get_queryset(self):
        return selectors.products_for(self.request.user)

    @extend_schema(request=ProductCreateSerializer, responses={201: ProductSerializer, **errors(400, 403)})
    def post(self, request: Request) -> Response:
        """Create a product the catalogue lacks (name, SKU, optional category name); 400 with a message
        when the SKU is taken in the company."""
        body = ProductCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            company = selectors.company_to_label_for(request.user, company_id=body.validated_data["company"])
            product = catalog.create_product(company=company, name=body.validated_data["name"],
                                             sku=body.validated_data["sku"], category=body.validated_data["category"])
        except (selectors.NoCompanyToLabelFor, catalog.ProductError) as error:
            raise ValidationError({"detail": str(error)}) from None
        product = selectors.products_for(request.user).get(pk=product.pk)
        return Response(ProductSerializer(product, context={"request": request}).data, status=status.HTTP_201_CREATED)


class ProductSearch(APIView):
    @extend_schema(parameters=[ProductSearchQuerySerializer],
                   responses={200: ProductSerializer(many=True), **errors(400)})
    def get(self, request: Request) -> Response:
        """Type-ahead over the catalogue, the store's assortment first."""
        query = ProductSearchQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        products = selectors.search_products(request.user, query=query.validated_data["q"],
                                             store_id=query.validated_data["store"], limit=query.validated_data["limit"])
        return Response(ProductSerializer(products, many=True, context={"request": request}).data)


class ConfirmRateReport(APIView):
    """The confirm rate (share of suggestions left unchanged) and the annotators' pace, grouped;
    ``?format=csv`` for a spreadsheet."""

    permission_classes = [ReadsReports]
    renderer_classes = [*api_settings.DEFAULT_RENDERER_CLASSES, CSVRenderer]

    @extend_schema(parameters=[
        OpenApiParameter("by", str, enum=list(selectors.REPORT_GROUPS), description="how to group the decisions"),
        OpenApiParameter("start", OpenApiTypes.DATE, description="first day (inclusive)"),
        OpenApiParameter("end", OpenApiTypes.DATE, description="last day (inclusive)"),
    ], responses={200: ConfirmRateRowSerializer(many=True), **errors(400, 403)})
    def get(self, request: Request) -> Response:
        query = ReportQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = [row.as_dict() for row in selectors.confirm_rate_by(request.user, **query.validated_data)]
        response = Response(ConfirmRateRowSerializer(rows, many=True).data)
        if request.accepted_renderer.format == "csv":
            response["Content-Disposition"] = f'attachment; filename="confirm-rate-by-{query.validated_data["by"]}.csv"'
        return response


class SuspiciousProductsReport(APIView):
    """For QA leads: products ranked by their share of labelled crops that look like another product,
    and the pairs of products whose crops are each other's nearest neighbours."""

    permission_classes = [ReviewsLabels]

    @extend_schema(responses={200: LabelNoiseReportSerializer, **errors(403)})
    def get(self, request: Request) -> Response:
        report = selectors.label_noise_report(request.user)
        return Response(LabelNoiseReportSerializer(report, context={"request": request}).data)


class Review(APIView):
    """QA leads relabel, remove or mark OK many labelled boxes at once (audited in the label history)."""

    @extend_schema(request=ReviewSerializer, responses={200: ReviewReportSerializer, **errors(400, 403)})
    def post(self, request: Request) -> Response:
        body = ReviewSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            report = review.review_boxes(user=request.user, **body.validated_data)
        except review.NotAReviewer as error:
            raise PermissionDenied(str(error)) from None
        except review.ReviewError as error:
            raise ValidationError({"detail": str(error)}) from None
        return Response(ReviewReportSerializer(report).data)


class BoxHistory(APIView):
    @extend_schema(responses={200: LabelHistorySerializer(many=True), **errors(404)})
    def get(self, request: Request, box_id: int) -> Response:
        return Response(LabelHistorySerializer(selectors.box_label_history(request.user, box_id=box_id), many=True).data)
