"""What every page needs to know about the user: which parts of the app to offer. An offer needs the
role in any of the user's companies; each action checks the role in its object's company."""
from annotator.permissions import can_label, can_read_reports, can_review, can_see_models


def roles(request) -> dict:
    user = getattr(request, "user", None)
    if user is None:
        return {"can_label": False, "can_read_reports": False, "can_review": False, "can_see_models": False}
    return {"can_label": can_label(user), "can_read_reports": can_read_reports(user),
            "can_review": can_review(user), "can_see_models": can_see_models(user)}
