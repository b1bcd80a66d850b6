from django.contrib.auth.decorators import login_not_required
from django.templatetags.static import static
from django.urls import path
from django.views.generic import RedirectView

from annotator import converters  # noqa: F401  (registers <id:...>)
from annotator import views

app_name = "annotator"

urlpatterns = [
    path("", views.frame_list, name="frame-list"),
    # Pages link the SVG icon; a client that asks for /favicon.ico anyway (a feed reader, a bookmark) is sent there.
    path("favicon.ico", login_not_required(RedirectView.as_view(url=static("annotator/favicon.svg"), permanent=True)),
         name="favicon"),
    path("frames/<id:frame_id>/", views.frame_detail, name="frame-detail"),
    path("frames/<id:frame_id>/retry/", views.frame_retry, name="frame-retry"),
    path("label/", views.workspace, name="workspace"),
    path("frames/<id:frame_id>/label/", views.workspace, name="workspace-frame"),
    path("reports/", views.reports, name="reports"),
    path("review/", views.review, name="review"),
    path("review/<id:product_id>/", views.review_product, name="review-product"),
    path("boxes/<id:box_id>/crop.jpg", views.box_crop, name="box-crop"),
    path("reports/confirm-rate.svg", views.reports_chart, name="reports-chart"),
    path("models/", views.models_page, name="models"),
    path("models/status/", views.models_status, name="models-status"),
    path("models/<id:model_set_id>/promote/", views.model_set_promote, name="model-set-promote"),
    path("models/rollback/<id:company_id>/", views.models_rollback, name="models-rollback"),
]
