from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response

from annotator import selectors
from annotator.api.serializers import FrameDetailSerializer, FrameSerializer, ProductSerializer


class FrameList(generics.ListAPIView):
    serializer_class = FrameSerializer

    def get_queryset(self):
        return selectors.frames_for(self.request.user, status=self.request.query_params.get("status"))


class FrameDetail(generics.GenericAPIView):
    serializer_class = FrameDetailSerializer

    @extend_schema(responses=FrameDetailSerializer)
    def get(self, request: Request, frame_id: int) -> Response:
        frame = selectors.frame_for(request.user, frame_id=frame_id)
        boxes = selectors.frame_boxes(frame=frame)
        return Response(FrameDetailSerializer(frame, context={"boxes": boxes, "request": request}).data)


class ProductList(generics.ListAPIView):
    serializer_class = ProductSerializer

    def get_queryset(self):
        return selectors.products_for(self.request.user)


