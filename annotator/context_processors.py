"""What every page needs to know about the user: which parts of the app to offer."""
from annotator.permissions import can_read_reports, can_see_models, has_role
from annotator.services.review import REVIEWERS


def roles(request) -> dict:
    user = getattr(request, "user", None)
    return {"can_read_reports": bool(user is not None and can_read_reports(user)),
            "can_review": bool(user is not None and has_role(user, *REVIEWERS)),
            "can_see_models": bool(user is not None and can_see_models(user))}
