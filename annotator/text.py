"""Wording shared by messages: small rules of English the f-strings would otherwise get wrong."""
from __future__ import annotations

# Initials read letter by letter that begin with a vowel sound: "an MPO image", "an SVG", but "a PNG".
_VOWEL_SOUND_LETTERS = frozenset("AEFHILMNORSX")


def with_article(word: str) -> str:
    """``word`` after "a" or "an" as it is said: "an annotator", "a qa_lead", "an admin", "a JPEG",
    "an MPO" (a word in capitals is taken as initials; "u" words such as "user" take "a")."""
    if not word:
        return word
    if word.isupper() and len(word) > 1:
        vowel = word[0] in _VOWEL_SOUND_LETTERS
    else:
        vowel = word[0].lower() in "aeio" or word.lower().startswith(("un", "up", "ul"))
    return f"{'an' if vowel else 'a'} {word}"
