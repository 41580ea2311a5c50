"""Answer-format instructions on training questions, the way real instruction data carries them.

LLaVA-1.5's mix appends "Answer the question using a single word or phrase." to short-answer VQA
questions and "Answer with the option's letter from the given choices directly." to multiple-choice
ones, and its answer is then the bare word, number or letter. Our eval prompts
(mm_assets/evaluation/benchmarks/*) ask in exactly those ways, so the training data must teach
the formats too. `instruct` rewrites some of a record's QAs, after the family drew them:

- a QA with a short form (`QA.short`) gets, with probability `INSTRUCTION_RATE`, an instruction
  and the bare short answer (and `QA.wrong` in the same form, for planted wrong answers):
  short answers the DocVQA / ChartQA / RealWorldQA suffix or a paraphrase, object counts the
  CountBench prefix or a paraphrase, and a QA with candidate answers (`QA.options`) sometimes
  becomes a lettered multiple-choice question in RealWorldQA's layout;
- a pointing query gets, with probability `POINT_TEMPLATE_RATE`, Molmo's eval template, and a
  scene without the object then answers "This isn't in the image." (other templates keep
  "There are none.");
- a general_shapes record gets, with probability `REALWORLD_STYLE_RATE`, one RealWorldQA-style
  question (multiple choice, yes/no or a count, with RealWorldQA's instructions).

Draws come from the record's own stream (`rng_for(seed, stream, domain, index, "instr")`), never
from the family's drawing stream, so the images, the other QAs and the eval sets (drawn by the
same families from "eval" streams) are unchanged, and near duplicates of a record get the same
instructions. Rewording a near duplicate keeps the instruction verbatim (`split_instruction`).
"""

from __future__ import annotations

import random
from dataclasses import replace

from .conversations import QA

INSTRUCTION_RATE = 0.5        # per QA that has a short form
MULTIPLE_CHOICE_SHARE = 0.25  # of instructed QAs with candidate answers: asked as multiple choice
POINT_TEMPLATE_RATE = 0.5     # of pointing queries: Molmo's eval template
REALWORLD_STYLE_RATE = 0.3    # of general_shapes records: one RealWorldQA-style question

# the eval prompts, verbatim (tests check them against mm_assets/evaluation/benchmarks)
DOCVQA_SUFFIX = "\nAnswer the question using a single word or phrase."
CHARTQA_SUFFIX = "\nAnswer the question with a single word."
REALWORLD_SHORT_SUFFIX = "\nPlease answer directly with a single word or number."
REALWORLD_MC_SUFFIX = "\nPlease answer directly with only the letter of the correct option and nothing else."
COUNTBENCH_PREFIX = ("Look at the image carefully and count the objects. "
                     "Answer with just a number, without any additional text. ")
POINT_TEMPLATE = "Point to {label}\nPlease say 'This isn't in the image.' if it is not in the image."
NOT_IN_IMAGE = "This isn't in the image."
# other harnesses' wordings and paraphrases
LLAVA_MC_SUFFIX = "\nAnswer with the option's letter from the given choices directly."
SHORT_PARAPHRASES = (
    "\nAnswer with a single word or phrase.",
    "\nAnswer using a single word or phrase.",
    "\nPlease try to answer the question with short words or phrases if possible.",   # Qwen2-VL's
    "\nRespond with only the answer, a word or a short phrase.",
    "\nGive a short answer: a single word or phrase.",
)
SINGLE_WORD_PARAPHRASES = ("\nAnswer with a single word.", "\nRespond with one word only.")
COUNT_PREFIXES = ("Count the objects in the image carefully. Answer with just a number. ",
                  "Look carefully and count. Reply with only a number. ")
COUNT_SUFFIXES = ("\nAnswer with a single number.", "\nAnswer with a number only, no other text.")
MC_SUFFIXES = (REALWORLD_MC_SUFFIX, LLAVA_MC_SUFFIX, "\nAnswer with the letter of the correct option.")

INSTRUCTION_PREFIXES = (COUNTBENCH_PREFIX, *COUNT_PREFIXES)
INSTRUCTION_SUFFIXES = (DOCVQA_SUFFIX, CHARTQA_SUFFIX, REALWORLD_SHORT_SUFFIX, *SHORT_PARAPHRASES,
                        *SINGLE_WORD_PARAPHRASES, *COUNT_SUFFIXES, *MC_SUFFIXES,
                        POINT_TEMPLATE.split("{label}")[1])

# (suffix, weight); None: a paraphrase. "single word" wordings only for answers of <= 2 words,
# the answers ChartQA's eval items have (eval_sets.eval_item picks those).
_SHORT_STYLES = {
    "chart": ((CHARTQA_SUFFIX, 0.4), (DOCVQA_SUFFIX, 0.3), (None, 0.3)),
    "ocr": ((DOCVQA_SUFFIX, 0.6), (None, 0.4)),
    "general": ((REALWORLD_SHORT_SUFFIX, 0.35), (DOCVQA_SUFFIX, 0.35), (None, 0.3)),
    "domain_specific": ((DOCVQA_SUFFIX, 0.5), (CHARTQA_SUFFIX, 0.1), (None, 0.4)),
}
_DEFAULT_STYLE = ((DOCVQA_SUFFIX, 0.5), (None, 0.5))
_SINGLE_WORDISH = (CHARTQA_SUFFIX, REALWORLD_SHORT_SUFFIX)
LETTERS = "ABCD"


def _weighted(rng: random.Random, pairs):
    x = rng.random() * sum(w for _, w in pairs)
    for value, w in pairs:
        x -= w
        if x < 0:
            return value
    return pairs[-1][0]


def _short_wrong(qa: QA) -> str | None:
    if qa.short_wrong is not None:
        return qa.short_wrong
    return qa.wrong if qa.wrong is not None and qa.answer == qa.short else None


def _short_suffix(domain: str, short: str, rng: random.Random) -> str:
    suffix = _weighted(rng, _SHORT_STYLES.get(domain, _DEFAULT_STYLE))
    few_words = len(short.split()) <= 2
    if suffix in _SINGLE_WORDISH and not few_words:
        suffix = DOCVQA_SUFFIX
    if suffix is None:
        pool = SHORT_PARAPHRASES + (SINGLE_WORD_PARAPHRASES if len(short.split()) == 1 else ())
        suffix = rng.choice(pool)
    return suffix


def _count(qa: QA, rng: random.Random) -> QA:
    r = rng.random()
    if r < 0.55:
        question = COUNTBENCH_PREFIX + qa.question.strip()
    elif r < 0.75:
        question = rng.choice(COUNT_PREFIXES) + qa.question.strip()
    elif r < 0.9:
        question = qa.question + rng.choice(COUNT_SUFFIXES)
    else:
        question = qa.question + REALWORLD_SHORT_SUFFIX
    return replace(qa, question=question, answer=qa.short, wrong=_short_wrong(qa))


def _option_text(option: str) -> str:
    return option[:1].upper() + option[1:]


def multiple_choice(question: str, right: str, distractors: list[str], rng: random.Random,
                    suffix: str | None = None, display=_option_text) -> QA:
    """`question` with lettered options (RealWorldQA's layout); the answer is the right letter."""
    options = [right, *distractors[: len(LETTERS) - 1]]
    rng.shuffle(options)
    letter = LETTERS[options.index(right)]
    wrong = rng.choice([LETTERS[i] for i in range(len(options)) if options[i] != right])
    lines = [question, *(f"{LETTERS[i]}. {display(o)}" for i, o in enumerate(options))]
    suffix = suffix or _weighted(rng, ((REALWORLD_MC_SUFFIX, 0.5), (LLAVA_MC_SUFFIX, 0.35), (MC_SUFFIXES[2], 0.15)))
    return QA("\n".join(lines) + suffix, letter, wrong=wrong, short=letter, form="choice")


def _as_multiple_choice(qa: QA, rng: random.Random) -> QA | None:
    key = qa.short.lower()
    right = next((o for o in qa.options if o.lower() == key), None)
    pool = list(dict.fromkeys(o for o in qa.options if o.lower() != key))
    if right is None or not pool:
        return None
    k = min(len(pool), rng.randint(1, 3) if len(pool) > 1 else 1)
    return multiple_choice(qa.question, right, rng.sample(pool, k), rng)


def _instructed(qa: QA, domain: str, rng: random.Random) -> QA:
    if qa.form == "count":
        return _count(qa, rng)
    if qa.options and rng.random() < MULTIPLE_CHOICE_SHARE:
        mc = _as_multiple_choice(qa, rng)
        if mc is not None:
            return mc
    question = qa.question + _short_suffix(domain, qa.short, rng)
    return replace(qa, question=question, answer=qa.short, wrong=_short_wrong(qa))


def _point(qa: QA, spec: dict) -> QA:
    question = POINT_TEMPLATE.format(label=spec["label"])
    answer = qa.answer if spec["targets"] else NOT_IN_IMAGE
    return replace(qa, question=question, answer=answer)


def realworld_style(objs, rng: random.Random) -> QA:
    """A RealWorldQA-style question about a shapes scene: multiple choice, yes/no or a count.

    The same kinds of question as `general.realworld_item` (the eval look-alike), drawn from the
    training record's stream.
    """
    r = rng.random()
    if r < 0.55 and len(objs) >= 2:
        key, phrase = rng.choice([(lambda o: o.cx, "furthest to the right"),
                                  (lambda o: -o.cx, "furthest to the left"),
                                  (lambda o: -o.cy, "closest to the top"),
                                  (lambda o: o.cy, "closest to the bottom")])
        ranked = sorted(objs, key=key, reverse=True)
        ranked = ranked[:1] + [o for o in ranked[1:] if abs(key(ranked[0]) - key(o)) >= 6]
        if len(ranked) >= 2:
            return multiple_choice(f"Which object is {phrase}?", ranked[0], ranked[1:], rng,
                                   display=lambda o: f"The {o.name}.")
    if r < 0.8:
        pairs = [(a, b) for a in objs for b in objs if a is not b]
        rng.shuffle(pairs)
        for a, b in pairs:
            if abs(a.cy - b.cy) > a.r + b.r and rng.random() < 0.5:
                yes = a.cy < b.cy
                q = f"Is the {a.name} above the {b.name}?"
                break
            if abs(a.cx - b.cx) > a.r + b.r:
                yes = a.cx < b.cx
                q = f"Is the {a.name} to the left of the {b.name}?"
                break
        else:
            q = None
        if q is not None:
            return QA(q + REALWORLD_SHORT_SUFFIX, "Yes" if yes else "No", wrong="No" if yes else "Yes",
                      short="Yes" if yes else "No", form="short")
    n = len(objs)
    q = rng.choice(["How many shapes are in the image?", "How many objects are there?"])
    return QA(q + REALWORLD_SHORT_SUFFIX, str(n), wrong=str(n + rng.choice([-1, 1])), short=str(n), form="count")


def instruct(family: str, domain: str, qas: list[QA], spec: dict, rng: random.Random) -> list[QA]:
    """The QAs of one record, some asked with an answer instruction (see the module docstring)."""
    out = []
    for qa in qas:
        r = rng.random()
        if qa.form == "point":
            out.append(_point(qa, spec) if r < POINT_TEMPLATE_RATE else qa)
        elif qa.short is not None and r < INSTRUCTION_RATE:
            out.append(_instructed(qa, domain, rng))
        else:
            out.append(qa)
    if family == "general_shapes" and out and rng.random() < REALWORLD_STYLE_RATE:
        out[rng.randrange(len(out))] = realworld_style(spec["objects"], rng)
    return out


def split_instruction(question: str) -> tuple[str, str, str]:
    """(instruction prefix, the question itself, the rest: options and instruction suffix).

    For a question without a known instruction: ("", question, "").
    """
    prefix = next((p for p in INSTRUCTION_PREFIXES if question.startswith(p)), "")
    rest = question[len(prefix):]
    if not prefix and not any(s in rest for s in INSTRUCTION_SUFFIXES):
        return "", question, ""
    body, nl, tail = rest.partition("\n")
    return prefix, body, nl + tail


__all__ = ["COUNTBENCH_PREFIX", "CHARTQA_SUFFIX", "DOCVQA_SUFFIX", "INSTRUCTION_RATE", "NOT_IN_IMAGE",
           "POINT_TEMPLATE", "REALWORLD_MC_SUFFIX", "REALWORLD_SHORT_SUFFIX", "instruct", "split_instruction"]
