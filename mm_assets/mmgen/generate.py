"""Targeted question/answer generation for candidate images: one request per (candidate image,
subgroup), one interface (`Generator`) over three back ends, a cache keyed by (image hash,
subgroup, request, model, prompt version), validation against the target benchmark's metric.

Back ends:
* `TemplateGenerator` — **not a VLM**. It re-targets a question/answer pair the candidate's own
  record already holds (the one whose answer the target benchmark's metric accepts and whose
  question shares most words with the subgroup's description) into the benchmark's prompt
  format: the eval's instruction wording, its answer form. It never sees the pixels and never
  reads the look-alike generator's hidden content, so it can only be as right as the record
  (a planted wrong answer stays wrong: the filters must catch it, as with a real generator).
* `DrawnGenerator` — **not a VLM either**: the look-alike data's stand-in for a strong one. It
  writes a question/answer pair from what the look-alike generator drew in the candidate image
  (`sample_data/content/image_content.jsonl`: every question the image's drawing family can
  answer, with the right answer — the record holds only the first few), preferring one the
  record does not ask, in the benchmark's format. It needs that file, so it exists only for
  generated data; it never reads the planted truth (which records are defects), but its answers
  are right where a record's planted answer is wrong — as a strong VLM's would be.
* `VLMGenerator` — any local VLM checkpoint through the eval back ends (`hf`: transformers on
  CPU or GPU; `vllm`: the `gpu` extra), prompted with the subgroup's description and its
  in-context reference examples and shown the candidate image; greedy decoding.

Outputs are parsed as ``Question: …`` / ``Answer: …``; a generation is kept only when its
question is a plain question (no ``<image>`` placeholder, bounded length) and its answer is in
the form the benchmark's metric scores as correct against itself (a count for CountBench, a
short phrase for ChartQA/DocVQA/RealWorldQA, points or "This isn't in the image." for PixMo),
and a CountBench question asks for a count.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import polars as pl

from mm_assets.storage import Storage

IMAGE_TOKEN = "<image>"
PROMPT_VERSION = "mmgen-targeted-qa.v1"
TEMPLATE_VERSION = "mmgen-template-retarget.v3"   # bump with any change to what it writes (cache key)
DRAWN_VERSION = "mmgen-drawn-content.v2"          # likewise
MAX_QUESTION_CHARS = 300
MAX_SHORT_ANSWER_WORDS = {"chartqa": 3, "docvqa": 6, "realworldqa": 3}
_QA = re.compile(r"^\s*(?:Question:\s*)?(?P<q>.+?)\s*\n+\s*Answer:\s*(?P<a>.+?)\s*$", re.S)
_INSTRUCTION = re.compile(r"(?i)\b(answer|please|reply|respond|say ')")
NONE_ANSWER = "This isn't in the image."
_COUNTING = re.compile(r"(?i)\b(how many|count|number of)\b")
_NUMBER = re.compile(r"[-+$]?\d*\.?\d+%?")
# RealWorldQA's items carry their options and answer instruction in the question (its prompt adds
# nothing), in these words
_OPTION = re.compile(r"\s+(?=[A-D]\.\s)")
REALWORLDQA_LETTER = "Please answer directly with only the letter of the correct option and nothing else."
REALWORLDQA_SHORT = "Please answer directly with a single word or number."

RESULT_SCHEMA = {
    "gen_id": pl.String, "subgroup": pl.String, "benchmark": pl.String, "source_sample_id": pl.String,
    "domain": pl.String, "reference_item_id": pl.String, "image_sha256": pl.String, "raw": pl.String,
    "question": pl.String, "answer": pl.String, "ok": pl.Boolean, "reason": pl.String, "cached": pl.Boolean,
    "json": pl.String,
}


@dataclass(frozen=True)
class GenRequest:
    benchmark: str
    subgroup: str
    description: str
    examples: tuple[tuple[str, str], ...]     # in-context reference (question, answer) pairs
    image: bytes
    image_sha256: str
    record: dict                               # the candidate's training record (conversations)
    answer_forms: tuple[str, ...] = ()         # the forms of the subgroup's reference answers (`answer_form`)

    def key_text(self, uses_record: bool) -> str:
        """What the cache keys the output by (with the model and prompt version as namespace). A
        generator that picks from the record also picks by the subgroup's answer forms; a VLM's
        prompt does not show them (they only validate its output)."""
        what = {"image": self.image_sha256, "subgroup": self.subgroup, "description": self.description,
                "examples": self.examples}
        if uses_record:
            what["conversations"] = self.record.get("conversations")
            what["answer_forms"] = self.answer_forms
        return json.dumps(what, sort_keys=True, ensure_ascii=False)


@runtime_checkable
class Generator(Protocol):
    name: str                # "template", "hf", "vllm"
    model_id: str
    prompt_version: str
    uses_record: bool        # its output depends on the candidate's record text, not only the image

    def generate(self, requests: list[GenRequest]) -> list[str]: ...

    def close(self) -> None: ...


# ----------------------------------------------------------------------------- validation


def body_of(question: str) -> str:
    """A training question without the image placeholder and without instruction lines or
    clauses (what the benchmark's own prompt adds back)."""
    text = question.replace(IMAGE_TOKEN, " ")
    from mm_assets.evaluation.benchmarks.countbench import PRE_PROMPT
    text = text.replace(PRE_PROMPT.strip(), " ")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    kept = [ln for ln in lines if not _INSTRUCTION.search(ln)] or lines[:1]
    return re.sub(r"\s+", " ", " ".join(kept)).strip()


def answer_problem(benchmark: str, answer: str) -> str | None:
    """Why `answer` is not in the form the benchmark's metric scores, or None when it is."""
    from mm_assets.evaluation.metrics import count_accuracy, count_answer, extract_points, relaxed_accuracy

    a = answer.strip()
    if not a:
        return "empty_answer"
    if benchmark == "countbench":
        n = count_answer(a)
        if not n.isdigit() or count_accuracy(a, int(n)) != 1.0:
            return "answer_not_a_count"
        return None
    if benchmark == "pixmo_points":
        if a == NONE_ANSWER or extract_points(a, 100, 100):
            return None
        return "answer_not_points"
    if len(a.split()) > MAX_SHORT_ANSWER_WORDS[benchmark]:
        return "answer_too_long"
    if benchmark == "chartqa" and relaxed_accuracy(a, [a]) != 1.0:
        return "answer_not_scored"
    return None


def answer_form(benchmark: str, answer: str) -> str:
    """What kind of answer this is: `yes/no`, `letter` (a multiple-choice option), `number`,
    `points`, `none` (PixMo's "This isn't in the image.") or `text`. A subgroup's reference answers
    have a few of these forms; a generation in another one teaches the subgroup's questions the
    wrong kind of answer ("Above" to "Is the square above the circle?")."""
    if benchmark == "pixmo_points":
        return "none" if answer.strip() == NONE_ANSWER else "points"
    if benchmark == "countbench":
        return "number"
    a = answer.strip().rstrip(".").lower()
    if a in ("yes", "no"):
        return "yes/no"
    if re.fullmatch(r"[a-d]", a):
        return "letter"
    if _NUMBER.fullmatch(a.replace(",", "")):
        return "number"
    return "text"


def answer_forms(benchmark: str, answers, min_share: float = 0.1) -> tuple[str, ...]:
    """The forms of at least `min_share` of a subgroup's reference answers, sorted; none (no
    constraint) for CountBench and PixMo-Points, whose answer form `answer_problem` fixes (and
    whose reference split holds PixMo's labels, not its points)."""
    if benchmark in ("countbench", "pixmo_points"):
        return ()

    counts = Counter(answer_form(benchmark, a) for a in answers)
    total = sum(counts.values())
    return tuple(sorted(f for f, n in counts.items() if n >= min_share * total))


def form_problem(request: GenRequest, answer: str) -> str | None:
    if request.answer_forms and answer_form(request.benchmark, answer) not in request.answer_forms:
        return "answer_form_not_the_subgroups"
    return None


def question_problem(benchmark: str, question: str) -> str | None:
    q = question.strip()
    if not q:
        return "empty_question"
    if IMAGE_TOKEN in q:
        return "image_token_in_question"
    if len(q) > MAX_QUESTION_CHARS:
        return "question_too_long"
    if benchmark == "pixmo_points" and len(q.split()) > 8:
        return "pointing_label_too_long"
    if benchmark == "countbench" and not _COUNTING.search(q):
        return "not_a_counting_question"
    return None


def eval_style_question(benchmark: str, question: str) -> str:
    """The question as the benchmark's own items hold it, before its prompt: for RealWorldQA the
    options one per line and the instruction for its answer form (a letter where there are
    options); the others' prompts add their instructions themselves."""
    if benchmark != "realworldqa":
        return question
    lines = _OPTION.split(body_of(question))
    return "\n".join([*lines, REALWORLDQA_LETTER if len(lines) > 2 else REALWORLDQA_SHORT])


def parse_generation(raw: str) -> tuple[str, str] | None:
    m = _QA.match(raw or "")
    if m is None:
        return None
    return m.group("q").strip(), m.group("a").strip().splitlines()[0].strip()


def training_record(request: GenRequest, gen_id: str, question: str, answer: str, lineage: dict) -> dict:
    """The generated sample as a training record: the candidate's image, one turn in the target
    benchmark's own prompt format (`<image>` first), lineage under `origin`."""
    from mm_assets.evaluation.benchmarks import BENCHMARKS

    prompt = BENCHMARKS[request.benchmark].doc_to_text({"question": eval_style_question(request.benchmark, question)})
    human = f"{IMAGE_TOKEN}\n{prompt}"
    if human.count(IMAGE_TOKEN) != 1:
        raise ValueError(f"{gen_id}: the prompt holds {human.count(IMAGE_TOKEN)} image placeholders")
    return {"sample_id": gen_id, "domain": request.record.get("domain"), "image": request.record.get("image"),
            "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": answer}],
            "fixes": [], "id_type": "str", "original_id": gen_id, "origin": {"mmgen": lineage}}


# ----------------------------------------------------------------------------- back ends


def _pointing_label(question: str) -> str:
    label = re.sub(r"(?i)^point (?:to|at) ", "", question).strip().rstrip(".?")
    label = re.sub(r"(?i)\s+in the (?:image|picture)$", "", label)
    return re.sub(r"(?i)^(?:any|all|every|the|each) ", "", label).strip()


def _overlap(text: str, description: str) -> int:
    words = {w.lower() for w in re.findall(r"[A-Za-z]{3,}", description)}
    return sum(1 for w in re.findall(r"[A-Za-z]{3,}", text) if w.lower() in words)


def _record_pairs(record: dict) -> list[tuple[str, str]]:
    turns = record.get("conversations") or []
    return [(turns[i]["value"], turns[i + 1]["value"]) for i in range(0, len(turns) - 1, 2)
            if turns[i].get("from") == "human" and turns[i + 1].get("from") == "gpt"]


def _best_pair(request: GenRequest, pairs, prefer=lambda body: 0) -> str:
    """The pair whose answer the benchmark's metric accepts and whose question is nearest the
    subgroup (first an answer in one of the subgroup's forms, then `prefer`, then word overlap with
    its description, then order), in the `Question:` / `Answer:` form; "" when none fits."""
    best = None
    for k, (q, a) in enumerate(pairs):
        body = body_of(q)
        if request.benchmark == "pixmo_points":
            if not re.match(r"(?i)^point (?:to|at) ", body):
                continue
            body = _pointing_label(body)
            a = a.strip() if "<point" in a else (NONE_ANSWER if "isn't" in a or "not in" in a else a)
        if answer_problem(request.benchmark, a) or question_problem(request.benchmark, body):
            continue
        score = (form_problem(request, a) is None, prefer(body), _overlap(body, request.description), -k)
        if best is None or score > best[0]:
            best = (score, body, a.strip())
    return "" if best is None else f"Question: {best[1]}\nAnswer: {best[2]}"


class TemplateGenerator:
    """Re-targets a question/answer pair of the candidate's record (see the module docstring)."""
    name = "template"
    model_id = "template"
    prompt_version = TEMPLATE_VERSION
    uses_record = True

    def generate(self, requests: list[GenRequest]) -> list[str]:
        return [_best_pair(r, _record_pairs(r.record)) for r in requests]

    def close(self) -> None:
        pass


def load_image_content(path: str) -> dict[str, list[tuple[str, str]]]:
    """The look-alike data's image content: image sha256 -> its (question, answer) pairs."""
    from mm_assets.storage import file_storage

    st, name = file_storage(path, {})
    if not st.exists(name):
        raise FileNotFoundError(f"{path}: no image content (the look-alike data writes it; regenerate the sample data)")
    out = {}
    for line in st.read_bytes(name).decode("utf-8").splitlines():
        row = json.loads(line)
        out[row["image_sha256"]] = [(qa["question"], qa["answer"]) for qa in row["qas"]]
    return out


class DrawnGenerator:
    """Writes from what was drawn in the candidate image, preferring a question its record does
    not ask; an image without content (another source's) gets what the template writes."""
    name = "drawn"
    model_id = "drawn"
    prompt_version = DRAWN_VERSION
    uses_record = True

    def __init__(self, image_content: str | None):
        if not image_content:
            raise ValueError("the drawn generator writes from the look-alike data's image content "
                             "(MammothSourceResource.image_content), which real data has not: use hf or vllm")
        self._content = load_image_content(image_content)

    def generate(self, requests: list[GenRequest]) -> list[str]:
        out = []
        for r in requests:
            pairs = _record_pairs(r.record)
            asked = {body_of(q).lower() for q, _ in pairs}
            drawn = self._content.get(r.image_sha256)
            out.append(_best_pair(r, drawn, prefer=lambda body: body.lower() not in asked) if drawn
                       else _best_pair(r, pairs))
        return out

    def close(self) -> None:
        pass


def vlm_prompt(request: GenRequest) -> str:
    shots = "\n".join(f"Question: {q}\nAnswer: {a}" for q, a in request.examples)
    return (f"You write training data for a vision-language model. Target: {request.description}.\n"
            f"Examples of such questions, with their answers:\n{shots}\n"
            "Write one new question of the same kind about the image shown, answerable from the image alone, "
            "and its short answer, in the same format.\nQuestion:")


class VLMGenerator:
    """Any local VLM checkpoint through the eval back ends (`hf` or `vllm`)."""
    prompt_version = PROMPT_VERSION
    uses_record = False

    def __init__(self, kind: str, checkpoint: str, max_new_tokens: int = 64, **options):
        from mm_assets.evaluation.backends import load_backend
        from mm_assets.rephrase.backends import model_fingerprint

        self.name = kind
        self.model_id = f"{kind}:{model_fingerprint(checkpoint)}"
        self.max_new_tokens = max_new_tokens
        self._backend = load_backend(kind, checkpoint, **options)

    def generate(self, requests: list[GenRequest]) -> list[str]:
        from mm_assets.embeddings.inference import decode_image
        from mm_assets.evaluation.backends.base import GenerationRequest

        out = self._backend.generate([GenerationRequest(vlm_prompt(r), decode_image(r.image)) for r in requests],
                                     self.max_new_tokens)
        return [o if o.lstrip().startswith("Question:") else f"Question: {o.lstrip()}" for o in out]

    def close(self) -> None:
        self._backend.close()


def load_generator(kind: str, model: str | None = None, image_content: str | None = None, **options) -> Generator:
    if kind == "template":
        return TemplateGenerator()
    if kind == "drawn":
        return DrawnGenerator(image_content)
    if kind in ("hf", "vllm"):
        if not model:
            raise ValueError(f"the {kind!r} generator needs `model`: a local VLM checkpoint directory")
        return VLMGenerator(kind, model, **options)
    raise ValueError(f"unknown generator {kind!r}; expected template, drawn, hf or vllm")


# ----------------------------------------------------------------------------- running


def gen_id(request: GenRequest, source_sample_id: str) -> str:
    return hashlib.sha256(f"mmgen\0{source_sample_id}\0{request.subgroup}".encode()).hexdigest()[:16]


def generate_all(requests: Sequence[tuple[str, str, GenRequest]], generator: Generator, cache_storage: Storage, *,
                 batch_size: int = 32, on_batch: Callable[[int, int], None] | None = None
                 ) -> tuple[pl.DataFrame, dict]:
    """Generate for `requests` (``(source_sample_id, reference_item_id, request)``), reading and
    appending the cache one batch at a time (a killed run resumes with the rest), then parse and
    validate every output. Returns one `RESULT_SCHEMA` row per request and counts."""
    from mm_assets.rephrase.cache import RephraseCache, text_key

    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    cache = RephraseCache(cache_storage, generator.model_id, generator.prompt_version)
    texts = [r.key_text(generator.uses_record) for _, _, r in requests]
    keys = [text_key(t) for t in texts]
    outputs = cache.load(set(keys))
    was_cached = set(outputs)
    todo = list(dict.fromkeys(k for k in keys if k not in outputs))
    first = {}
    for k, t, req in zip(keys, texts, requests):
        first.setdefault(k, (t, req[2]))
    for s in range(0, len(todo), batch_size):
        batch = todo[s:s + batch_size]
        generated = generator.generate([first[k][1] for k in batch])
        if len(generated) != len(batch):
            raise RuntimeError(f"{generator.name} returned {len(generated)} outputs for {len(batch)} requests")
        cache.append([first[k][0] for k in batch], generated)
        outputs.update(zip(batch, generated))
        if on_batch is not None:
            on_batch(min(s + batch_size, len(todo)), len(todo))
    rows, rejected = [], Counter()
    for (source, ref_item, req), key in zip(requests, keys):
        gid = gen_id(req, source)
        raw = outputs[key]
        parsed = parse_generation(raw)
        if parsed is None:
            reason = "no_question_answer" if raw.strip() else "nothing_generated"
            question = answer = record = None
        else:
            question, answer = parsed
            reason = (question_problem(req.benchmark, question) or answer_problem(req.benchmark, answer)
                      or form_problem(req, answer))
            record = None
            if reason is None:
                record = json.dumps(training_record(req, gid, question, answer, {
                    "source_sample_id": source, "subgroup": req.subgroup, "benchmark": req.benchmark,
                    "reference_item_id": ref_item, "generator": generator.model_id,
                    "prompt_version": generator.prompt_version}), ensure_ascii=False, sort_keys=True)
        if reason is not None:
            rejected[reason] += 1
        rows.append((gid, req.subgroup, req.benchmark, source, req.record.get("domain"), ref_item,
                     req.image_sha256, raw, question, answer, reason is None, reason or "valid", key in was_cached,
                     record))
    results = pl.DataFrame(rows, schema=RESULT_SCHEMA, orient="row")
    stats = {"requests": len(requests), "generated": len(todo), "from_cache": len(set(keys)) - len(todo),
             "valid": int(results["ok"].sum()) if results.height else 0, "rejected": dict(sorted(rejected.items()))}
    return results, stats
