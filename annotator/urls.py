from django.urls import path

from annotator import views

app_name = "annotator"

urlpatterns = [
    path("", views.frame_list, name="frame-list"),
    path("frames/<int:frame_id>/", views.frame_detail, name="frame-detail"),
    path("frames/<int:frame_id>/retry/", views.frame_retry, name="frame-retry"),
    path("label/", views.workspace, name="workspace"),
    path("frames/<int:frame_id>/label/", views.workspace, name="workspace-frame"),
    path("reports/", views.reports, name="reports"),
    path("reports/confirm-rate.svg", views.reports_chart, name="reports-chart"),
]
