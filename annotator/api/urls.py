from django.urls import path

from annotator.api import views

urlpatterns = [
    path("frames/", views.FrameList.as_view(), name="api-frame-list"),
    path("frames/<int:frame_id>/", views.FrameDetail.as_view(), name="api-frame-detail"),
    path("products/", views.ProductList.as_view(), name="api-product-list"),
]
