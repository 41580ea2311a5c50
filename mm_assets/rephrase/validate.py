"""Checks that a rewritten turn says the same thing as the original (no Dagster import).

`validate_rewrite` is deliberately strict and cheap: it cannot judge meaning, so it checks
what a faithful rewrite must keep — `<image>` placeholders, numbers, quoted text, names, the
answer — and rejects what a broken generation typically looks like (empty, an echo of the
input, chat scaffolding, a reply that answers instead of rewording, text sharing no words
with the original, runaway length). A rejected rewrite is never applied: the original turn
stays and the reason goes into the ledger.

A reason is ``"<code>: <detail>"`` — the code is machine readable (metadata counts rejections
by code, see `reason_code`), the detail is for a person, e.g. ``"lost_number: 42"``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

IMAGE_PLACEHOLDER = "<image>"
OK = "ok"

NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
QUOTED = re.compile(r'"([^"\n]{1,80})"')
WORD = re.compile(r"[A-Za-z][A-Za-z0-9'-]*")
_SENTENCE_SPLIT = re.compile(r"(?<=[.?!:])\s+|\n+")
_CHAT_MARKUP = re.compile(r"(?i)\b(user|assistant|system)\s*:|</?s>|<\|")
_FINAL_ANSWER = re.compile(r"(?i)\bthe (?:final )?answer is:?\s*(.+?)\s*\.?\s*$")
_STOPWORDS = frozenset(
    "a an the of to in on at by for with from and or is are was were be been do does did what which who whom "
    "whose how many much why when where this that these those there it its as into than then please can could "
    "would you your me tell give".split())

# Answers longer than this are not checked for leaking into a rewritten question: a long
# reply cannot plausibly appear verbatim in a question, and its words would match by chance.
LEAK_CHECK_MAX_CHARS = 40
# Fewer content words than this and word overlap says nothing ("What is 12 times 3?" ->
# "What do you get when you multiply 12 by 3?" shares none and is faithful).
MIN_WORDS_FOR_OVERLAP = 3


def reason_code(reason: str) -> str:
    """The machine-readable part of a reason (``"lost_number: 42"`` -> ``"lost_number"``)."""
    return reason.split(":", 1)[0].strip()


def numbers_in(text: str) -> list[str]:
    """Digit strings as written (``3,083.24``, ``2.75``, ``01``), in order."""
    return NUMBER.findall(text)


def names_in(text: str) -> set[str]:
    """Capitalised words that do not start a sentence: proper names (``Japan``), labels
    (``B`` in "the part labelled B"), transcribed capitals (``COTTAGE``)."""
    names = set()
    for sentence in _SENTENCE_SPLIT.split(text):
        words = WORD.findall(sentence)
        names.update(w for w in words[1:] if w[0].isupper() and w != "I")
    return names


def content_words(text: str) -> set[str]:
    """Lower-cased 5-letter prefixes of the non-stopwords (``description`` ~ ``describe``)."""
    return {w.lower()[:5] for w in WORD.findall(text) if len(w) >= 3 and w.lower() not in _STOPWORDS}


def final_answer(answer: str) -> str | None:
    """The short answer an answer turn must keep: the X of "... The answer is X." or the whole
    answer when it is short (at most 5 words, no line break); None for long free-form text."""
    text = answer.strip()
    m = _FINAL_ANSWER.search(text)
    if m and m.group(1).strip():
        return m.group(1).strip()
    if text and "\n" not in text and len(text.split()) <= 5:
        return text.rstrip(".").strip() or None
    return None


def _normalised(text: str) -> str:
    return " ".join(text.casefold().split()).rstrip(".?! ")


def _contains(text: str, needle: str) -> bool:
    """Whole-word containment; case-insensitive unless the needle is a single character."""
    flags = 0 if len(needle) == 1 else re.IGNORECASE
    return re.search(rf"(?<!\w){re.escape(needle)}(?!\w)", text, flags) is not None


def validate_rewrite(original: str, rewritten: str | None, *, answers: Sequence[str] = (),
                     role: str = "question", keep_all_numbers: bool = True,
                     allow_new_numbers: bool | None = None, min_overlap: float = 0.25,
                     min_ratio: float = 0.3, max_ratio: float = 2.5, slack_chars: int = 40) -> tuple[bool, str]:
    """``(True, "ok")`` or ``(False, reason)`` for one rewritten turn (the full turn text,
    placeholders included).

    `role` ``"question"``: `answers` are the replies to this question; one that the original
    question did not contain must not appear in the rewrite (a rewrite that gives the answer
    away). `role` ``"answer"``: `answers` are the short answers (see `final_answer`) that must
    survive verbatim.

    Checks, in order: empty; unchanged (up to case, spacing, final punctuation); chat
    scaffolding; ``<image>`` count; answers; numbers — every distinct number of the original
    kept (for answers only those of `answers` when `keep_all_numbers` is False), and no new
    number unless `allow_new_numbers` (default: only for answers); quoted text kept; names kept;
    a question stays a question; at least `min_overlap` of the original's content words kept (when
    it has `MIN_WORDS_FOR_OVERLAP` or more);
    length within ``[min_ratio * n, max_ratio * n + slack_chars]`` characters.
    """
    if role not in ("question", "answer"):
        raise ValueError(f"role must be 'question' or 'answer', got {role!r}")
    if allow_new_numbers is None:
        allow_new_numbers = role == "answer"
    new = (rewritten or "").strip()
    if not new.replace(IMAGE_PLACEHOLDER, "").strip():
        return False, "empty: the rewrite has no text"
    if _normalised(new) == _normalised(original):
        return False, "unchanged: the rewrite repeats the original"
    markup = _CHAT_MARKUP.search(new)
    if markup and not _CHAT_MARKUP.search(original):
        return False, f"chat_markup: {markup.group(0)!r}"
    n_img, n_img_new = original.count(IMAGE_PLACEHOLDER), new.count(IMAGE_PLACEHOLDER)
    if n_img != n_img_new:
        return False, f"image_placeholder: expected {n_img} '<image>', got {n_img_new}"
    for answer in (a.strip() for a in answers):
        if not answer:
            continue
        if role == "answer" and answer not in new:
            return False, f"lost_answer: {answer}"
        if (role == "question" and len(answer) <= LEAK_CHECK_MAX_CHARS
                and not _contains(original, answer) and _contains(new, answer)):
            return False, f"answer_leak: the rewritten question contains its answer {answer!r}"
    required = numbers_in(original) if (role == "question" or keep_all_numbers) else \
        [n for a in answers for n in numbers_in(a)]
    have = set(numbers_in(new))
    for n in dict.fromkeys(required):
        if n not in have:
            return False, f"lost_number: {n}"
    if not allow_new_numbers:
        extra = sorted(have - set(numbers_in(original)))
        if extra:
            return False, f"new_number: {extra[0]}"
    for quote in QUOTED.findall(original):
        if quote not in new:
            return False, f"lost_quote: {quote!r}"
    for name in sorted(names_in(original)):
        if not _contains(new, name):
            return False, f"lost_name: {name}"
    if role == "question" and "?" in original and "?" not in new:
        return False, "not_a_question: the original asks a question, the rewrite does not"
    words = content_words(original.replace(IMAGE_PLACEHOLDER, ""))
    if len(words) >= MIN_WORDS_FOR_OVERLAP:
        overlap = len(words & content_words(new)) / len(words)
        if overlap < min_overlap:
            return False, f"low_overlap: {overlap:.2f} of the original's content words kept (< {min_overlap})"
    n, m = len(original.replace(IMAGE_PLACEHOLDER, "").strip()), len(new.replace(IMAGE_PLACEHOLDER, "").strip())
    if m < min_ratio * n:
        return False, f"too_short: {m} chars for an original of {n}"
    if m > max_ratio * n + slack_chars:
        return False, f"too_long: {m} chars for an original of {n}"
    return True, OK
