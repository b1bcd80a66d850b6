"""Pages. Thin: check access, call a selector, render."""
from __future__ import annotations

import io

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from django.views.static import serve

from annotator import selectors
from annotator.charts import confirm_rate_chart
from annotator.forms import REPORT_COLUMNS, ReportFilterForm
from annotator.models import Frame
from annotator.permissions import can_label, can_manage_models, can_read_reports, can_review, can_see_models
from inference.images import crop_boxes, open_image, web_image_type
from annotator.services.model_sets import ModelSetStateError, queue_promotion, rollback
from annotator.services.prelabel_queue import retry_frame


def media_file(request: HttpRequest, path: str) -> HttpResponse:
    """A frame or product image on local disk, for users of its company only (S3 media is served by
    the store itself, through signed URLs). Whatever a stored file holds, a browser gets it as an
    image or a download, never as a page of this site: the type comes from the extension, not from
    sniffing, and the sandbox keeps any script in it from running with a colleague's session."""
    if not selectors.may_see_media(request.user, name=path):
        raise Http404("No such image.")
    response = serve(request, path, document_root=settings.MEDIA_ROOT)
    content_type = web_image_type(path)  # for frames, the server chose the extension from the decoded format
    response["Content-Type"] = content_type or "application/octet-stream"
    response["Content-Disposition"] = "inline" if content_type else "attachment"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    return response


def frame_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status") or None
    frames = selectors.frames_for(request.user, status=status)
    page = Paginator(frames, 50).get_page(request.GET.get("page"))
    return render(request, "annotator/frame_list.html", {
        "page": page, "status": status, "statuses": Frame.Status.choices,
    })


def frame_detail(request: HttpRequest, frame_id: int) -> HttpResponse:
    frame = selectors.frame_for(request.user, frame_id=frame_id)
    boxes = selectors.frame_boxes(frame=frame)
    return render(request, "annotator/frame_detail.html", {"frame": frame, "boxes": boxes})


def _labeller(request: HttpRequest, *, company: int | None = None) -> None:
    if not can_label(request.user, company=company):
        raise PermissionDenied("Labelling is for annotators and QA leads; managers read the frames and reports.")


def workspace(request: HttpRequest, frame_id: int | None = None) -> HttpResponse:
    """The labelling workspace. Without a frame it takes the next scheduled one; the page leases
    frames through the API, which refuses a frame another annotator holds."""
    frame = selectors.frame_for(request.user, frame_id=frame_id) if frame_id is not None else None
    _labeller(request, company=frame.company_id if frame is not None else None)
    return render(request, "annotator/workspace.html", {"frame": frame})


@require_POST
def frame_retry(request: HttpRequest, frame_id: int) -> HttpResponse:
    frame = selectors.frame_for(request.user, frame_id=frame_id)
    _labeller(request, company=frame.company_id)
    if retry_frame(frame=frame):
        messages.success(request, f"Frame #{frame.pk} is queued for pre-labelling again.")
    else:
        messages.info(request, f"Frame #{frame.pk} has not failed: nothing to retry.")
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        back = "annotator:frame-list"  # another site's address would make this an open redirect
    return redirect(back)


def _report_filters(request: HttpRequest) -> ReportFilterForm:
    form = ReportFilterForm(request.GET)
    if not can_read_reports(request.user):
        raise PermissionDenied("Reports are for managers and QA leads.")
    return form


def reports(request: HttpRequest) -> HttpResponse:
    """Managers' dashboard: the confirm rate over time and by a chosen grouping, sortable, with the
    annotators' pace; the same figures as the report API, which exports them as CSV."""
    form = _report_filters(request)
    rows, totals, chart_query = [], None, ""
    if form.is_valid():
        data = form.cleaned_data
        filters = {"start": data.get("start"), "end": data.get("end")}
        rows = selectors.confirm_rate_by(request.user, by=data["by"], **filters)
        sort = data.get("sort") or "-boxes"
        key = sort.lstrip("-")
        rows.sort(key=lambda r: (getattr(r, key) is None, getattr(r, key) or 0) if key != "group" else r.group,
                  reverse=sort.startswith("-"))
        totals = selectors.confirm_rate_by(request.user, by="day", **filters)
        chart_query = request.GET.urlencode()
    summary = {
        "boxes": sum(r.boxes for r in totals or []),
        "confirmed": sum(r.confirmed for r in totals or []),
        "suggested": sum(r.suggested for r in totals or []),
        "changed_later": sum(r.changed_later for r in totals or []),
    }
    return render(request, "annotator/reports.html", {
        "form": form, "rows": rows, "summary": summary, "columns": REPORT_COLUMNS, "chart_query": chart_query,
        "sort": (form.cleaned_data.get("sort") if form.is_valid() else "") or "-boxes",
    })


def reports_chart(request: HttpRequest) -> HttpResponse:
    form = _report_filters(request)
    if not form.is_valid():
        return HttpResponse(" ".join(" ".join(e) for e in form.errors.values()), status=400, content_type="text/plain")
    data = form.cleaned_data
    rows = selectors.confirm_rate_by(request.user, by=data["by"], over=data["over"], start=data.get("start"),
                                     end=data.get("end"))
    svg = confirm_rate_chart(rows, title=f"Confirm rate per {data['over']}, by {data['by']}", over=data["over"])
    return HttpResponse(svg, content_type="image/svg+xml")


def _reviewer(request: HttpRequest, *, company: int | None = None) -> None:
    if not can_review(request.user, company=company):
        raise PermissionDenied("Reviewing labels is for QA leads.")


def review(request: HttpRequest) -> HttpResponse:
    """QA leads' start page: products by their share of suspicious crops, and confusable pairs."""
    _reviewer(request)
    return render(request, "annotator/review.html", {"report": selectors.label_noise_report(request.user),
                                                        "min_crops": selectors.MIN_REVIEW_CROPS})


def review_product(request: HttpRequest, product_id: int) -> HttpResponse:
    """One product's labelled crops in a grid, most suspicious first, to relabel, remove or mark OK."""
    _reviewer(request)
    product, crops = selectors.product_review(request.user, product_id=product_id)
    _reviewer(request, company=product.company_id)
    return render(request, "annotator/review_product.html", {"product": product, "crops": crops})


def box_crop(request: HttpRequest, box_id: int) -> HttpResponse:
    """The box's crop as a JPEG (the grid's thumbnails), for any user of the box's company."""
    box = selectors.box_for(request.user, box_id=box_id)
    try:
        with box.frame.image.open("rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise Http404("The frame's image is missing.") from None
    [crop] = crop_boxes(open_image(data), [box.bbox])
    crop.thumbnail((160, 160))
    out = io.BytesIO()
    crop.save(out, format="JPEG", quality=85)
    response = HttpResponse(out.getvalue(), content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=3600"
    return response


def _model_viewer(request: HttpRequest) -> None:
    if not can_see_models(request.user):
        raise PermissionDenied("The Models page is for QA leads and admins.")


def models_page(request: HttpRequest) -> HttpResponse:
    """Each company's learning rounds with their gate figures (candidate beside promoted), the state
    of a running round and of a collection build, and, for admins, promote and roll back."""
    _model_viewer(request)
    return render(request, "annotator/models.html", {
        "overview": selectors.model_overview(request.user), "can_manage": can_manage_models(request.user),
    })


def models_status(request: HttpRequest) -> JsonResponse:
    """What the Models page polls while a round or a build runs."""
    _model_viewer(request)
    return JsonResponse(selectors.learning_status(request.user))


def _model_admin(request: HttpRequest, *, company: int | None = None) -> None:
    if not can_manage_models(request.user, company=company):
        raise PermissionDenied("Promoting and rolling back model sets is for admins.")


@require_POST
def model_set_promote(request: HttpRequest, model_set_id: int) -> HttpResponse:
    _model_admin(request)
    model_set = selectors.model_set_for(request.user, model_set_id=model_set_id)
    _model_admin(request, company=model_set.company_id)
    if model_set.company.model_set_id == model_set.pk:
        messages.info(request, f"{model_set.company} already runs {model_set.name}.")
    else:
        queue_promotion(model_set=model_set)
        messages.success(request, f"{model_set.name}: its collection is being built; {model_set.company} switches "
                                  "to it when every labelled crop is in.")
    return redirect("annotator:models")


@require_POST
def models_rollback(request: HttpRequest, company_id: int) -> HttpResponse:
    _model_admin(request)
    company = selectors.company_for(request.user, company_id=company_id)
    _model_admin(request, company=company.pk)
    try:
        company = rollback(company=company)
    except ModelSetStateError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"{company} now runs {company.model_set.name if company.model_set else 'the base set'}.")
    return redirect("annotator:models")
