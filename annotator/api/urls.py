from django.contrib.auth.decorators import login_not_required
from django.urls import path
from rest_framework.views import APIView

from annotator import converters  # noqa: F401  (registers <id:...>)
from annotator.api import views


def endpoint(view: type[APIView]):
    """The view, authenticated by DRF itself (token or session): an anonymous request gets a 401,
    not the login page's redirect that LoginRequiredMiddleware gives pages."""
    return login_not_required(view.as_view())


urlpatterns = [
    path("auth/token/", endpoint(views.AuthToken), name="api-auth-token"),
    path("frames/", endpoint(views.FrameList), name="api-frame-list"),
    path("frames/next/", endpoint(views.NextFrame), name="api-frame-next"),
    path("frames/<id:frame_id>/", endpoint(views.FrameDetail), name="api-frame-detail"),
    path("frames/<id:frame_id>/lease/", endpoint(views.FrameLease), name="api-frame-lease"),
    path("frames/<id:frame_id>/force/", endpoint(views.FrameForce), name="api-frame-force"),
    path("frames/<id:frame_id>/submit/", endpoint(views.FrameSubmit), name="api-frame-submit"),
    path("products/", endpoint(views.ProductList), name="api-product-list"),
    path("products/search/", endpoint(views.ProductSearch), name="api-product-search"),
    path("boxes/<id:box_id>/history/", endpoint(views.BoxHistory), name="api-box-history"),
    path("review/", endpoint(views.Review), name="api-review"),
    path("reports/confirm-rate/", endpoint(views.ConfirmRateReport), name="api-report-confirm-rate"),
    path("reports/suspicious-products/", endpoint(views.SuspiciousProductsReport), name="api-report-suspicious"),
]
