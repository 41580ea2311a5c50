"""Per-item metrics that reproduce the reference harnesses exactly.

Specification: /work/shared/notes/eval-metrics.md (section numbers below refer to it). Every
function takes the raw model output and applies the reference's own trimming first; nothing
else is normalised unless the reference does it.

Choices on the ambiguities the notes list in §8:

- ANLS (§8.1, §8.2): lmms-eval HEAD. The prediction is trimmed before scoring, so the length
  denominator is the trimmed prediction's; a score of exactly 0.5 is kept. An empty gold list
  scores 0.0 (the reference would raise).
- Relaxed accuracy (§8.4): lmms-eval scores one gold. With several golds we take the max
  (VLMEvalKit / Molmo), which equals lmms-eval whenever there is one gold, as in our ChartQA
  items; a gold that looks like a list literal is NOT split into several golds.
- CountBench (§8.5, §4.5): the lmms-eval ``countbench`` rule (whole-string number words).
- RealWorldQA (§8.6, §5.6): lmms-eval HEAD (since 9ca4445d) is ``realworldqa_accuracy``; its
  letter extraction follows lmms-eval ``_task_utils/mcq_extract.py`` as the notes describe it
  (uppercase letters only, format priority then last position). The legacy v0.2.3–v0.6.x
  pipeline, behind the LLaVA-OneVision numbers, is ``realworldqa_accuracy_legacy``.
- PixMo-Points (§8.7): Molmo v1 ``PointingEval`` with its format gate, but with gt points in
  pixels as Molmo2 does (§6.6); outputs that pass the gate but yield no usable point score 0
  instead of crashing (§6.5). Molmo2's ``<points coords=...>`` format is not parsed (v1 did not).
  The one-to-one pairing re-implements scipy's ``linear_sum_assignment`` (shortest augmenting
  path, same column scan order) so that ties break as in the reference without a scipy
  dependency.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence

import numpy as np

METRIC_VERSIONS = {
    "anls": "lmms-eval@75571cfe api/metrics.anls (trimmed prediction; 0.5 kept)",
    "relaxed_accuracy": "lmms-eval@75571cfe tasks/chartqa relaxed_correctness (5%; max over golds)",
    "count_accuracy": "lmms-eval@75571cfe tasks/countbench acc (number words none/zero..twenty)",
    "realworldqa_accuracy": "lmms-eval@75571cfe tasks/realworldqa (since 9ca4445d) + _task_utils/mcq_extract",
    "realworldqa_accuracy_legacy": "lmms-eval v0.2.3-v0.6.x realworldqa flexible-extract + exact_match",
    "pointing_prf": "molmo@793fa387 PointingEval (format gate), gt in pixels as molmo2@f3cb1085",
}


def _lmms_trim(prediction: str | None) -> str:
    """lmms-eval's generate_until glue: ``response.strip()``, None becomes ""."""
    return "" if prediction is None else str(prediction).strip()


# --- DocVQA: ANLS (§2.3) ---------------------------------------------------------------------


def _levenshtein(a: str, b: str) -> int:
    """Edit distance in code points; insert, delete and substitute all cost 1."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def anls(prediction: str, answers: list[str]) -> float:
    """ANLS of one question, lmms-eval ``anls`` semantics (§2.3, §2.4)."""
    pred = _lmms_trim(prediction)
    if not answers:
        return 0.0
    pred_norm = " ".join(pred.lower().split())
    nlds = []
    for gold in answers:
        gold = str(gold)
        dist = _levenshtein(" ".join(gold.lower().split()), pred_norm)
        # The denominator uses the un-normalised strings, measured after .upper().
        length = max(len(gold.upper()), len(pred.upper()))
        nlds.append(0.0 if length == 0 else dist / length)
    score = 1 - min(nlds)
    return score if score >= 0.5 else 0.0


# --- ChartQA: relaxed accuracy (§3.3) ---------------------------------------------------------


def _to_float(text: str) -> float | None:
    try:
        if text.endswith("%"):
            return float(text.rstrip("%")) / 100.0
        return float(text)
    except ValueError:
        return None


def _relaxed_correct(pred: str, target: str) -> bool:
    p, t = _to_float(pred), _to_float(target)
    if p is not None and t:  # t == 0 is falsy and falls through to the string comparison
        return abs(p - t) / abs(t) <= 0.05
    return pred.lower() == target.lower()


def relaxed_accuracy(prediction: str, answers: list[str]) -> float:
    """ChartQA relaxed correctness (pix2struct / lmms-eval), 1.0 or 0.0 (§3.3, §3.4)."""
    pred = _lmms_trim(prediction)
    return float(any(_relaxed_correct(pred, str(gold)) for gold in answers))


# --- CountBench (§4.2) --------------------------------------------------------------------------

_COUNT_WORDS = {
    word: str(i)
    for i, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
_COUNT_WORDS["none"] = "0"


def count_answer(value) -> str:
    """lmms-eval ``countbench`` normalisation: trim, lowercase, map a whole-string number word."""
    text = str(value).strip().lower()
    return _COUNT_WORDS.get(text, text)


def count_accuracy(prediction: str, number: int) -> float:
    """lmms-eval ``countbench`` acc: normalised prediction equals normalised gold (§4.2)."""
    return float(count_answer(_lmms_trim(prediction)) == count_answer(int(number)))


# --- RealWorldQA, lmms-eval HEAD (§5.3) --------------------------------------------------------

_MCQ_LETTERS = ("A", "B", "C", "D")
_ANSWER_PHRASES = (
    "the answer is", "answer is", "the correct answer is", "correct answer is", "the best answer is",
    "best answer is", "the correct option is", "correct option is", "the best option is",
    "best option is", "the choice is", "choice is", "the correct choice is", "correct choice is",
    "i choose", "i select", "i pick", "my answer is", "my choice is",
    "옵션", "정답은", "답은", "답:", "答案是", "答案为", "选", "答えは",
)
# Higher wins; within one format the later position wins.
_PRIORITY = {"start": 10, "end": 9, "phrase": 7, "parentheses": 6, "period": 5, "colon": 4,
             "right_paren": 3, "space": 2, "fallback": 0}


def extract_mcq_letter(response: str, choices: Sequence[str] = _MCQ_LETTERS) -> str:
    """The choice letter lmms-eval's ``extract_mcq_answer`` picks, or "" (§5.3).

    Only the given (uppercase) letters are searched, as plain substrings: ``"b"`` finds nothing.
    """
    if not response or not response.strip():
        return ""
    text = response.strip()
    for ch in ",.!?;:'\"":  # one character at a time, in this order
        text = text.strip(ch)
    text = f" {text} "
    found: list[tuple[int, int, str]] = []  # (priority, position, letter)
    for fmt, tpl in (("parentheses", "({})"), ("period", "{}."), ("colon", "{}:"),
                     ("right_paren", "{})"), ("space", "{} ")):
        for ch in choices:
            pos = text.rfind(tpl.format(ch))
            if pos >= 0:
                found.append((_PRIORITY[fmt], pos, ch))
    lower = text.lower()
    for phrase in _ANSWER_PHRASES:
        at = lower.find(phrase)
        if at >= 0:
            for ch in choices:
                pos = text.find(ch, at + len(phrase))
                if pos >= 0:
                    found.append((_PRIORITY["phrase"], pos, ch))
    bare = text.strip()
    for ch in choices:
        if bare.startswith(ch) and (len(bare) == 1 or not bare[1].isalpha()):
            found.append((_PRIORITY["start"], 0, ch))
        if bare.endswith(ch) and (len(bare) == 1 or not bare[-2].isalpha()):
            found.append((_PRIORITY["end"], len(text) - 1, ch))
    if not found:
        found = [(_PRIORITY["fallback"], text.rfind(ch), ch) for ch in choices if ch in text]
    if not found:
        return ""
    return max(found, key=lambda c: (c[0], c[1]))[2]


def realworldqa_parse(prediction: str, answer: str) -> str:
    """What lmms-eval HEAD compares with the gold: a letter for A–D golds, else cleaned text."""
    pred = _lmms_trim(prediction)
    if answer.strip().upper() in _MCQ_LETTERS:
        return extract_mcq_letter(pred, _MCQ_LETTERS)
    return pred.lower().strip().rstrip(".")


def realworldqa_accuracy(prediction: str, answer: str, question: str) -> float:
    """lmms-eval HEAD RealWorldQA exact match (§5.3).

    ``question`` is unused by the HEAD rule (choices are fixed to A–D); it is accepted so the
    signature matches ``realworldqa_accuracy_legacy``, which reads the options from it.
    """
    parsed = realworldqa_parse(prediction, answer)
    gold = answer.strip()
    if gold.upper() in _MCQ_LETTERS:
        return float(parsed == gold.upper())
    return float(parsed == gold.lower())


# --- RealWorldQA, lmms-eval v0.2.3–v0.6.x (§5.3 "Legacy") ---------------------------------------

_LEGACY_WORDS = {w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine ten".split())}
_LEGACY_OPTION = re.compile(r"\b([A-Z])\.\s+([^\n]*)")
_NOT_WORD_OR_SPACE = re.compile(r"[^\w\s]")
_ASCII_PUNCT = str.maketrans("", "", string.punctuation)


def realworldqa_legacy_parse(prediction: str, question: str) -> str:
    """The legacy ``flexible-extract`` filter chain on the raw output, then lmms-eval's trim."""
    resp = "" if prediction is None else str(prediction)
    resp = _LEGACY_WORDS.get(resp.lower(), resp)  # whole raw response, untrimmed
    letter_of: dict[str, str] = {}
    alternatives = []
    for k, (_, text) in enumerate(_LEGACY_OPTION.findall(question)):
        text = text.strip()
        alternatives.append(re.escape(text))
        letter_of[text] = chr(ord("A") + k)  # by order of appearance, not the printed letter
    cleaned = _NOT_WORD_OR_SPACE.sub("", resp).strip()
    # The first alternative that matches at the leftmost position wins, as in the reference;
    # with no options the pattern is empty and matches "" (which maps to nothing).
    m = re.compile("|".join(alternatives)).search(cleaned)
    out = letter_of[m.group()] if m and m.group() in letter_of else cleaned
    return out.strip()


def realworldqa_accuracy_legacy(prediction: str, answer: str, question: str) -> float:
    """Legacy lmms-eval RealWorldQA: filters, then exact_match ignoring case and ASCII punctuation."""
    parsed = realworldqa_legacy_parse(prediction, question)
    return float(parsed.lower().translate(_ASCII_PUNCT) == str(answer).lower().translate(_ASCII_PUNCT))


# --- PixMo-Points: Molmo pointing eval (§6) ----------------------------------------------------

_POINT_PATTERNS = (
    # (regex, divisor applied to the captured values before the percent → pixel conversion)
    (re.compile(r"Click\(([0-9]+\.[0-9]), ?([0-9]+\.[0-9])\)"), None),
    (re.compile(r"\(([0-9]+\.[0-9]),? ?([0-9]+\.[0-9])\)"), None),
    (re.compile(r'x\d*="\s*([0-9]+(?:\.[0-9]+)?)"\s+y\d*="\s*([0-9]+(?:\.[0-9]+)?)"'), None),
    (re.compile(r"(?:\d+|p)\s*=\s*([0-9]{3})\s*,\s*([0-9]{3})"), 10.0),
)

_NUM = r"\d+(?:\.\d+)?"
_ALT_AND_BODY = r'alt="[\s\S]*?">[\s\S]*?'
# Molmo v1's is_valid_format: the whole trimmed output must be one of these five shapes.
_POINT_FORMAT = re.compile(
    rf"(?:\(\s*-?{_NUM}\s*,\s*-?{_NUM}\s*\)\n?)+"
    rf'|<point\s+x="\s*{_NUM}"\s+y="\s*{_NUM}"\s+{_ALT_AND_BODY}</point>'
    rf'|<points\s+(?:x\d+="\s*{_NUM}"\s+y\d+="\s*{_NUM}"\s+)+{_ALT_AND_BODY}</points>'
    rf"|<point\s+p=\s*\d{{3}}\s*,\s*\d{{3}}\s+{_ALT_AND_BODY}</point>"
    rf"|<points\s+(?:\d+=\s*\d{{3}}\s*,\s*\d{{3}}\s+)+{_ALT_AND_BODY}</points>"
)


def extract_points(text: str, width: int, height: int) -> list[tuple[float, float]]:
    """Molmo v1 ``extract_points``: every point in ``text``, in pixels (§6.3).

    The four patterns are scanned over the whole text in a fixed order and their matches
    concatenated (so ``Click(1.0, 2.0)`` yields the point twice). Pairs whose larger coordinate
    exceeds 100 are dropped; the rest are percent of width/height.
    """
    points = []
    for pattern, divisor in _POINT_PATTERNS:
        for m in pattern.finditer(text):
            if divisor is None:
                x, y = float(m.group(1)), float(m.group(2))
            else:
                x, y = int(m.group(1)) / divisor, int(m.group(2)) / divisor
            if max(x, y) > 100:
                continue
            points.append((x / 100.0 * width, y / 100.0 * height))
    return points


def is_valid_point_format(text: str) -> bool:
    """Molmo v1's format gate on the trimmed output (§6.4)."""
    return _POINT_FORMAT.fullmatch(text.strip()) is not None


def _assign(cost: list[list[float]]) -> list[tuple[int, int]]:
    """Minimum-cost one-to-one pairing of rows and columns, min(rows, cols) pairs.

    Same algorithm and scan order as scipy's ``linear_sum_assignment`` (Crouse's shortest
    augmenting path), so equal-cost alternatives resolve the same way.
    """
    nr, nc = len(cost), (len(cost[0]) if cost else 0)
    if nr == 0 or nc == 0:
        return []
    transposed = nc < nr
    if transposed:
        cost = [list(col) for col in zip(*cost)]
        nr, nc = nc, nr
    u, v = [0.0] * nr, [0.0] * nc
    col4row, row4col, path = [-1] * nr, [-1] * nc, [-1] * nc
    for cur in range(nr):
        dist = [math.inf] * nc
        seen_row, seen_col = [False] * nr, [False] * nc
        remaining = list(range(nc - 1, -1, -1))  # reversed: a constant matrix gives the identity
        n_rem, min_val, i, sink = nc, 0.0, cur, -1
        while sink == -1:
            seen_row[i] = True
            index, lowest = -1, math.inf
            for it in range(n_rem):
                j = remaining[it]
                r = min_val + cost[i][j] - u[i] - v[j]
                if r < dist[j]:
                    path[j], dist[j] = i, r
                # On ties prefer a free column: it ends the search.
                if dist[j] < lowest or (dist[j] == lowest and row4col[j] == -1):
                    lowest, index = dist[j], it
            min_val = lowest
            j = remaining[index]
            if row4col[j] == -1:
                sink = j
            else:
                i = row4col[j]
            seen_col[j] = True
            n_rem -= 1
            remaining[index] = remaining[n_rem]
        u[cur] += min_val
        for r in range(nr):
            if seen_row[r] and r != cur:
                u[r] += min_val - dist[col4row[r]]
        for c in range(nc):
            if seen_col[c]:
                v[c] -= min_val - dist[c]
        j = sink
        while True:
            i = path[j]
            row4col[j] = i
            col4row[i], j = j, col4row[i]
            if i == cur:
                break
    pairs = [(r, col4row[r]) for r in range(nr)]
    return [(c, r) for r, c in pairs] if transposed else pairs


def _in_mask(point: tuple[float, float], mask: np.ndarray) -> bool:
    """Molmo ``is_point_in_region``: round half to even, bounds from the mask's shape."""
    h, w = mask.shape[:2]
    x, y = round(point[0]), round(point[1])
    return 0 <= x < w and 0 <= y < h and bool(mask[y, x])


def pointing_prf(
    prediction: str,
    gt_points_px: list[tuple[float, float]],
    masks: list[np.ndarray],
    width: int,
    height: int,
) -> tuple[float, float, float]:
    """Precision, recall and F1 of one pointing example, Molmo v1 ``PointingEval`` (§6.5).

    ``masks`` are boolean H×W arrays, one per gt point; ``width``/``height`` convert the
    predicted percent coordinates to pixels. Malformed output scores 0; it never raises.
    """
    text = _lmms_trim(prediction)
    preds = extract_points(text, width, height)
    if not gt_points_px:
        s = float(len(preds) == 0)
        return s, s, s
    if len(masks) != len(gt_points_px):
        raise ValueError(f"{len(gt_points_px)} gt points but {len(masks)} masks")
    if not preds or not is_valid_point_format(text):
        return 0.0, 0.0, 0.0
    # Euclidean distance summed in the same order as scipy's cdist.
    cost = [[math.sqrt((px - gx) * (px - gx) + (py - gy) * (py - gy)) for gx, gy in gt_points_px]
            for px, py in preds]
    hits = sum(_in_mask(preds[i], masks[j]) for i, j in _assign(cost))
    precision, recall = hits / len(preds), hits / len(masks)
    if precision == 0 or recall == 0:
        return precision, recall, 0.0
    return precision, recall, 2 * (precision * recall) / (precision + recall + 1e-10)
