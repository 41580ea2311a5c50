"""Question/answer pairs, LLaVA conversations, rewording and low-quality corruptions."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from .vocab import CATEGORY_SETS, METRICS

IMAGE_TOKEN = "<image>"


@dataclass
class QA:
    question: str
    answer: str
    wrong: str | None = None          # a plausible but wrong answer (for planted wrong answers)
    golds: tuple[str, ...] = ()       # accepted answer variants (eval sets)
    tag: str = ""                     # question type (eval sets)
    extra: dict = field(default_factory=dict)
    # what `instructions.instruct` needs to ask for the answer in an eval's short format:
    short: str | None = None          # the bare answer as an eval gold is written (word, number, phrase)
    short_wrong: str | None = None    # a plausible wrong answer in that form (default: `wrong` when
                                      # `answer` is already the short form)
    form: str = ""                    # "short", "count" (an object count) or "point" (a pointing query)
    options: tuple[str, ...] = ()     # candidate answers, the right one included (multiple choice)


def n_turns(rng: random.Random, available: int) -> int:
    """Mostly single-turn; some rows carry 2 or 3 QA pairs."""
    r = rng.random()
    want = 1 if r < 0.72 else 2 if r < 0.92 else 3
    return max(1, min(want, available))


def build(qas: list[QA], with_image: bool, rng: random.Random | None = None,
          image_token: bool = True) -> list[dict]:
    """LLaVA turns; the image placeholder goes into the first human turn."""
    turns: list[dict] = []
    for k, qa in enumerate(qas):
        q = qa.question
        if k == 0 and with_image and image_token:
            q = f"{q}\n{IMAGE_TOKEN}" if rng is not None and rng.random() < 0.1 else f"{IMAGE_TOKEN}\n{q}"
        turns.append({"from": "human", "value": q})
        turns.append({"from": "gpt", "value": qa.answer})
    return turns


# ---------------------------------------------------------------- rewording (near duplicates)

_SWAPS = (
    ("What is", "What's"), ("What's", "What is"), ("How many", "What is the number of"),
    ("colour", "color"), ("color", "colour"), ("image", "picture"), ("picture", "image"),
    ("Which", "What"), ("chart", "graph"), ("graph", "chart"), ("shown", "displayed"),
    ("the value of", "the value for"), ("Describe", "Give a description of"),
    ("buys", "purchases"), ("has", "owns"), ("bought", "purchased"), ("total", "overall"),
    ("each", "every"), ("Compute", "Calculate"), ("Calculate", "Compute"), ("Find", "Determine"),
)
_PREFIXES = ("Based on the image, ", "Looking at the picture, ", "Please answer: ",
             "Quick question: ", "Tell me, ", "According to the figure, ")
_TEXT_PREFIXES = ("Solve the following. ", "Please help with this: ", "Question: ",
                  "Try this one. ", "Here is a task. ")


def _lower_first(s: str) -> str:
    return s[:1].lower() + s[1:] if s[:2] != s[:2].upper() else s


def reword(question: str, rng: random.Random, text_only: bool = False) -> str:
    """A light paraphrase that keeps the answer the same."""
    out = question
    swaps = [s for s in _SWAPS if s[0] in out]
    rng.shuffle(swaps)
    for a, b in swaps[: rng.randint(1, 2)]:
        out = out.replace(a, b, 1)
    if out == question or rng.random() < 0.5:
        prefix = rng.choice(_TEXT_PREFIXES if text_only else _PREFIXES)
        out = prefix + (out if text_only else _lower_first(out))
    return out


def _reword_keeping_instruction(question: str, rng: random.Random, text_only: bool) -> str:
    """Reword the question itself; an answer instruction and multiple-choice options stay verbatim."""
    from .instructions import split_instruction
    prefix, body, tail = split_instruction(question)
    return prefix + reword(body, rng, text_only) + tail


def reword_first_question(conv: list[dict], rng: random.Random, text_only: bool) -> list[dict]:
    conv = [dict(t) for t in conv]
    value = conv[0]["value"]
    if IMAGE_TOKEN in value:
        before, _, after = value.partition(IMAGE_TOKEN)
        if before.strip():   # placeholder at the end
            conv[0]["value"] = _reword_keeping_instruction(before.rstrip("\n"), rng, text_only) + "\n" \
                + IMAGE_TOKEN + after
        else:
            conv[0]["value"] = IMAGE_TOKEN + "\n" + _reword_keeping_instruction(after.lstrip("\n"), rng, text_only)
    else:
        conv[0]["value"] = _reword_keeping_instruction(value, rng, text_only)
    return conv


# ---------------------------------------------------------------- low-quality corruptions

_NUM = re.compile(r"-?\d+(?:\.\d+)?")


def perturb_number(text: str, rng: random.Random) -> str | None:
    """Change the last number in `text` so the answer is wrong; None if there is no number."""
    matches = list(_NUM.finditer(text))
    if not matches:
        return None
    m = matches[-1]
    s = m.group(0)
    decimals = len(s.split(".")[1]) if "." in s else 0
    v = float(s)
    delta = max(1.0, abs(v) * rng.uniform(0.15, 0.4))
    new = v + delta * rng.choice([-1, 1])
    if decimals == 0:
        new = round(new)
        if new == v:
            new = v + 1
        rep = str(int(new))
    else:
        rep = f"{new:.{decimals}f}"
    return text[: m.start()] + rep + text[m.end():]


def garble(text: str, rng: random.Random) -> str:
    chars = list(text)
    for _ in range(4):
        rng.shuffle(chars)
        out = "".join(chars)
        if out != text:
            return out
    return text[::-1] + "#"


def truncate(text: str, rng: random.Random) -> str:
    if len(text) < 4:
        return text[:1]
    cut = max(1, int(len(text) * rng.uniform(0.3, 0.6)))
    return text[:cut].rstrip() if text[:cut].strip() else text[:1]


def hallucinated_table(rng: random.Random) -> str:
    """A plausible data table for an unrelated chart (labels and values invented)."""
    labels = list(rng.choice(list(CATEGORY_SETS.values())))
    rng.shuffle(labels)
    metric = rng.choice(METRICS)
    rows = [f"| {lab} | {rng.randint(1, 999)} |" for lab in labels[: rng.randint(3, 6)]]
    return "\n".join([f"| Category | {metric} |", "|---|---|", *rows])


UNRELATED_CHART_QUESTIONS = (
    "Generate underlying data table of the chart.",
    "Convert the chart to a data table.",
    "Extract the data table behind this chart.",
)


# What a generating model writes when it declines (the refusals and hedges found in
# model-written instruction data); one phrase answers every question of a refused row.
REFUSALS = (
    "I'm sorry, but I can't determine that from the image.",
    "I'm sorry, I cannot answer that question.",
    "I am unable to provide an answer based on this image.",
    "Sorry, I can't help with that.",
    "I cannot tell from the information provided.",
    "As an AI, I am not able to answer this question.",
)


def refused(conv: list[dict], rng: random.Random) -> list[dict]:
    """A copy of `conv` whose every answer is one refusal, drawn from `REFUSALS`."""
    refusal = rng.choice(REFUSALS)
    return [dict(t, value=refusal) if t["from"] == "gpt" else dict(t) for t in conv]


def corrupt(conv: list[dict], qas: list[QA], kind: str, rng: random.Random,
            with_image: bool) -> tuple[list[dict], str]:
    """Apply one planted low-quality kind to a conversation built from `qas`.

    Returns the new conversation and the kind actually applied: a row with no answer that
    can be made plausibly wrong, or whose answer is too short to cut, gets a garbled answer.
    """
    if kind == "refusal":
        return refused(conv, rng), kind
    conv = [dict(t) for t in conv]
    answers = list(range(1, len(conv), 2))
    if kind == "unrelated_question":
        q = rng.choice(UNRELATED_CHART_QUESTIONS)
        return build([QA(q, hallucinated_table(rng))], with_image, rng), kind
    if kind == "wrong_answer":
        for k, qa in zip(answers, qas):
            new = qa.wrong if qa.wrong and qa.wrong != qa.answer else perturb_number(qa.answer, rng)
            if new and new != qa.answer:
                conv[k]["value"] = new
                return conv, kind
        kind = "garbled_answer"
    longest = max(answers, key=lambda k: len(conv[k]["value"]))
    if kind == "truncated_answer":
        cut = truncate(conv[longest]["value"], rng)
        if cut != conv[longest]["value"]:
            conv[longest]["value"] = cut
            return conv, kind
        kind = "garbled_answer"     # a bare one-character answer ("7", "B") cannot be cut short
    if kind == "garbled_answer":
        conv[longest]["value"] = garble(conv[longest]["value"], rng)
    else:
        raise ValueError(kind)
    return conv, kind


def fmt_num(v: float) -> str:
    """Integers without a decimal point, others with at most two decimals."""
    if abs(v - round(v)) < 1e-9:
        return str(int(round(v)))
    return f"{v:.2f}".rstrip("0").rstrip(".")
