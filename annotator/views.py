"""Pages. Thin: check access, call a selector, render."""
from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from annotator import selectors
from annotator.models import Frame
from annotator.services.prelabel import retry_frame


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


def workspace(request: HttpRequest, frame_id: int | None = None) -> HttpResponse:
    """The labelling workspace. Without a frame it takes the next scheduled one; the page leases
    frames through the API, which refuses a frame another annotator holds."""
    frame = selectors.frame_for(request.user, frame_id=frame_id) if frame_id is not None else None
    return render(request, "annotator/workspace.html", {"frame": frame})


@require_POST
def frame_retry(request: HttpRequest, frame_id: int) -> HttpResponse:
    frame = selectors.frame_for(request.user, frame_id=frame_id)
    if retry_frame(frame=frame):
        messages.success(request, f"Frame #{frame.pk} is queued for pre-labelling again.")
    else:
        messages.info(request, f"Frame #{frame.pk} has not failed: nothing to retry.")
    return redirect(request.POST.get("next") or "annotator:frame-list")
