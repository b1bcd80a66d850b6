"""Reading a pipeline stage's hyperparameters from the JSON file a command is given."""
import json
from pathlib import Path

from django.core.management.base import CommandError

from annotator.text import with_article


def read_stage_config(kind, path: Path | None, name: str):
    """``kind.from_dict`` of the file's JSON (None: the stage's defaults). A file that is missing or
    not such a config exits the command with one line naming it."""
    if path is None:
        return None
    try:
        return kind.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, AttributeError) as error:
        raise CommandError(f"{path}: not {with_article(name)} config ({error})") from None
