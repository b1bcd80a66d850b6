from django.urls import path

from annotator.api import views

urlpatterns = [
    path("frames/", views.FrameList.as_view(), name="api-frame-list"),
    path("frames/next/", views.NextFrame.as_view(), name="api-frame-next"),
    path("frames/<int:frame_id>/", views.FrameDetail.as_view(), name="api-frame-detail"),
    path("frames/<int:frame_id>/lease/", views.FrameLease.as_view(), name="api-frame-lease"),
    path("frames/<int:frame_id>/submit/", views.FrameSubmit.as_view(), name="api-frame-submit"),
    path("products/", views.ProductList.as_view(), name="api-product-list"),
    path("products/search/", views.ProductSearch.as_view(), name="api-product-search"),
    path("boxes/<int:box_id>/history/", views.BoxHistory.as_view(), name="api-box-history"),
    path("review/", views.Review.as_view(), name="api-review"),
    path("reports/confirm-rate/", views.ConfirmRateReport.as_view(), name="api-report-confirm-rate"),
    path("reports/suspicious-products/", views.SuspiciousProductsReport.as_view(), name="api-report-suspicious"),
]
