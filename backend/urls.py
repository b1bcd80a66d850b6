from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView

from annotator import views as annotator_views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/", include("annotator.api.urls")),
    path("api/schema/", login_not_required(SpectacularAPIView.as_view()), name="api-schema"),
    path("", include("annotator.urls")),
]

# Under /api/, what no API view answers is answered in JSON too (a path no route matches, a request
# Django refuses before any view reads it).
handler400 = "annotator.api.errors.bad_request"
handler404 = "annotator.api.errors.page_not_found"

if not settings.AWS_STORAGE_BUCKET_NAME:
    # Media on local disk: served by Django to the users of each image's company (S3 media uses signed URLs).
    urlpatterns.append(re_path(r"^media/(?P<path>.*)$", annotator_views.media_file, name="media"))
