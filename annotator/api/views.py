"""The REST API: everything the workspace does, for any client. Thin: parse, check access through
the selectors (another company's data is a 404), call one service, render."""
from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
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
    LabelHistorySerializer,
    LabelNoiseReportSerializer,
    ProductSerializer,
    ReportQuerySerializer,
    ReviewReportSerializer,
    ReviewSerializer,
    SubmitReportSerializer,
    SubmitSerializer,
)
from annotator.api.renderers import CSVRenderer
from annotator.permissions import LabelsFrames, ReadsReports
from annotator.services import review, workspace


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def frame_detail_response(request: Request, frame) -> Response:
    boxes = selectors.frame_boxes(frame=frame)
    return Response(FrameDetailSerializer(frame, context={"boxes": boxes, "request": request}).data)


class FrameList(generics.ListAPIView):
    serializer_class = FrameSerializer

    def get_queryset(self):
        return selectors.frames_for(self.request.user, status=self.request.query_params.get("status"))


class FrameDetail(APIView):
    @extend_schema(responses=FrameDetailSerializer)
    def get(self, request: Request, frame_id: int) -> Response:
        return frame_detail_response(request, selectors.frame_for(request.user, frame_id=frame_id))


class NextFrame(APIView):
    permission_classes = [*api_settings.DEFAULT_PERMISSION_CLASSES, LabelsFrames]

    @extend_schema(request=None, responses={200: FrameDetailSerializer, 204: None})
    def post(self, request: Request) -> Response:
        """Lease the next scheduled frame to label; 204 when there is none."""
        frame = workspace.lease_next_frame(user=request.user)
        if frame is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return frame_detail_response(request, selectors.frame_for(request.user, frame_id=frame.pk))


class FrameLease(APIView):
    permission_classes = [*api_settings.DEFAULT_PERMISSION_CLASSES, LabelsFrames]

    @extend_schema(request=None, responses={200: FrameDetailSerializer, 409: None})
    def post(self, request: Request, frame_id: int) -> Response:
        """Open the frame for labelling; 409 while another annotator holds it."""
        selectors.frame_for(request.user, frame_id=frame_id)
        try:
            frame = workspace.lease_frame(frame_id=frame_id, user=request.user)
        except workspace.WorkspaceError as error:
            raise Conflict(str(error)) from None
        return frame_detail_response(request, frame)

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, frame_id: int) -> Response:
        workspace.release_frame(frame=selectors.frame_for(request.user, frame_id=frame_id), user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class FrameSubmit(APIView):
    permission_classes = [*api_settings.DEFAULT_PERMISSION_CLASSES, LabelsFrames]

    @extend_schema(request=SubmitSerializer, responses={200: SubmitReportSerializer, 400: None, 409: None})
    def post(self, request: Request, frame_id: int) -> Response:
        """Submit an answer for every box of the frame (and any new boxes), in one transaction."""
        selectors.frame_for(request.user, frame_id=frame_id)
        payload = SubmitSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        answers = [
            workspace.BoxAnswer(box_id=a.get("id"), bbox=tuple(a["bbox"]) if "bbox" in a else None,
                                product_id=a.get("product_id"), deleted=a["deleted"], time_spent_ms=a["time_spent_ms"])
            for a in payload.validated_data["boxes"]
        ]
        try:
            report = workspace.submit_frame(frame_id=frame_id, user=request.user, answers=answers)
        except workspace.InvalidSubmission as error:
            raise ValidationError({"detail": str(error)}) from None
        except workspace.WorkspaceError as error:
            raise Conflict(str(error)) from None
        return Response(SubmitReportSerializer(report).data)


class ProductList(generics.ListAPIView):
    serializer_class = ProductSerializer

    def get_queryset(self):
        return selectors.products_for(self.request.user)


class ProductSearch(APIView):
    @extend_schema(parameters=[OpenApiParameter("q", str), OpenApiParameter("store", int),
                               OpenApiParameter("limit", int)], responses=ProductSerializer(many=True))
    def get(self, request: Request) -> Response:
        """Type-ahead over the catalogue, the store's assortment first."""
        try:
            store = int(request.query_params["store"]) if request.query_params.get("store") else None
            limit = min(max(int(request.query_params.get("limit", 20)), 1), 50)
        except ValueError:
            raise ValidationError({"detail": "store and limit must be integers"}) from None
        products = selectors.search_products(request.user, query=request.query_params.get("q", "").strip()[:100],
                                             store_id=store, limit=limit)
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
    ], responses=ConfirmRateRowSerializer(many=True))
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

    permission_classes = [ReadsReports]

    @extend_schema(responses=LabelNoiseReportSerializer)
    def get(self, request: Request) -> Response:
        report = selectors.label_noise_report(request.user)
        return Response(LabelNoiseReportSerializer(report, context={"request": request}).data)


class Review(APIView):
    """QA leads relabel, remove or mark OK many labelled boxes at once (audited in the label history)."""

    @extend_schema(request=ReviewSerializer, responses=ReviewReportSerializer)
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
    @extend_schema(responses=LabelHistorySerializer(many=True))
    def get(self, request: Request, box_id: int) -> Response:
        return Response(LabelHistorySerializer(selectors.box_label_history(request.user, box_id=box_id), many=True).data)
