"""Parsing command options that several commands share."""
import re

from django.core.management.base import CommandError


def regex_option(pattern: str | None, option: str) -> re.Pattern | None:
    """The compiled regex of an option (None when not given); a bad one exits with one line naming the option."""
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as error:
        raise CommandError(f"{option}: bad regex {pattern!r} ({error})") from None
