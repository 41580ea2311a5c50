"""Rephrasing back ends: one interface, `Rephraser`, three implementations (no Dagster import).

* `TemplateParaphraseBackend` — **not a language model**: deterministic, offline, rule-based
  rewording of questions (sentence-template swaps such as "What is X?" -> "What's X?",
  "How many X are in the image?" -> "In the image, how many X are there?", a polite
  "Please ..." on imperatives, a small synonym table such as image/picture, colour/color,
  Compute/Calculate, and a fixed question preamble when no rule applies). It never touches
  digits, quoted text or capitalised words, so it keeps what validation checks. It is the
  embedded default and a baseline, not a substitute for model rephrasing.
* `HFRephraseBackend` — any local causal LM through transformers (``AutoModelForCausalLM`` +
  ``AutoTokenizer`` from a directory, ``trust_remote_code`` off, offline), the tokenizer's chat
  template when it has one, batched greedy decoding with left padding.
* `VLLMRephraseBackend` — the same prompts through vLLM's offline API (``vllm.LLM``,
  ``SamplingParams(temperature=0)``, ``LLM.generate``); GPU, the ``gpu`` extra; vLLM is
  imported only when the back end is created.

A back end is bound to one *style* (`PROMPTS`): what it rewrites (the human questions or the
gpt answers) and the versioned instruction it uses. ``prompt_version`` and ``model_id`` are part
of the rephrase cache key, so changing a prompt's wording means bumping its version.
``rephrase`` returns the raw generation, one per input, in input order; cleaning
(`clean_generation`) and validation happen after the cache, so neither needs a regeneration
when it changes.
"""

from __future__ import annotations

import gc
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

# ----------------------------------------------------------------------------- prompts


@dataclass(frozen=True)
class PromptSpec:
    style: str
    role: str                 # "question": rewrites human turns; "answer": rewrites gpt turns
    version: str              # part of the cache key: bump it whenever `instruction` changes
    instruction: str
    max_new_tokens: int
    checks: dict = field(default_factory=dict)    # extra keyword arguments for validate_rewrite


PROMPTS: dict[str, PromptSpec] = {p.style: p for p in (
    PromptSpec(
        "paraphrase", "question", "paraphrase-question.v1",
        "Rewrite the question below so that it asks exactly the same thing in different words. "
        "Keep every number, name, label and quoted text exactly as written. Do not answer it and "
        "do not add information. Reply with the rewritten question only.",
        max_new_tokens=96),
    PromptSpec(
        "concise", "answer", "concise-answer.v1",
        "Rewrite the answer below as briefly as possible. Keep its final result exactly as written, "
        "including every number and unit it ends with. Reply with the rewritten answer only.",
        max_new_tokens=128, checks={"keep_all_numbers": False, "min_overlap": 0.0, "min_ratio": 0.05}),
    PromptSpec(
        "detailed", "answer", "detailed-answer.v1",
        "Rewrite the answer below as a clear, complete explanation that ends with the same final "
        "result. Keep every number, name and label exactly as written and add no new facts. "
        "Reply with the rewritten answer only.",
        max_new_tokens=384, checks={"max_ratio": 8.0, "slack_chars": 200}),
)}

_LABEL = {"question": "Question", "answer": "Answer"}


def prompt_for(spec: PromptSpec, text: str) -> str:
    """The user message a language-model back end sends for one text."""
    return f"{spec.instruction}\n\n{_LABEL[spec.role]}: {text}"


_LEADING_LABEL = re.compile(r"(?i)^\s*(?:here is |here's )?(?:the )?(?:rewritten|rephrased|paraphrased)?\s*"
                            r"(?:question|answer|version|text)\s*:\s*")


def clean_generation(text: str) -> str:
    """Strip what instruction-tuned models wrap a rewrite in: surrounding whitespace, a leading
    "Rewritten question:" style label, and one pair of enclosing quotes."""
    out = text.strip()
    out = _LEADING_LABEL.sub("", out, count=1).strip()
    if len(out) >= 2 and out[0] == out[-1] and out[0] in "\"'" and out.count(out[0]) == 2:
        out = out[1:-1].strip()
    return out


@runtime_checkable
class Rephraser(Protocol):
    name: str             # back end kind: "template", "hf", "vllm"
    model_id: str         # what generates (cache key part): a fingerprinted model or the rule set
    style: str            # a key of PROMPTS: which turns are rewritten and how they are validated
    prompt_version: str   # cache key part

    def rephrase(self, texts: list[str]) -> list[str]:
        """One raw rewrite per text, in order (placeholder-free turn bodies)."""
        ...


# ----------------------------------------------------------------------------- template rules

TEMPLATE_RULES_VERSION = "template-paraphrase.v1"

_WORD_SWAPS = {
    "image": "picture", "picture": "image", "photo": "picture", "colour": "color", "color": "colour",
    "shown": "displayed", "displayed": "shown", "labelled": "labeled", "labeled": "labelled",
    "closest": "nearest", "nearest": "closest", "chart": "graph",
}
_VERB_SWAPS = {"Compute": "Calculate", "Calculate": "Compute", "Find": "Determine", "Determine": "Find",
               "Describe": "Give a description of"}
_SWAP_RE = re.compile(r"\b(" + "|".join(sorted(_WORD_SWAPS, key=len, reverse=True)) + r")\b", re.IGNORECASE)
_QUOTED_SPLIT = re.compile(r'("[^"\n]*")')
_IMPERATIVE = ("Describe", "Write", "Provide", "Give", "Locate", "Point to", "Transcribe", "Compute",
               "Calculate", "Find", "Convert", "Sort", "List", "Count", "Read", "Identify", "Explain",
               "Summarize", "Summarise", "Determine", "Solve", "Name", "State")
_STRUCTURAL: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"^What is (the .+\?)$"), r"What's \1"),
    (re.compile(r"^What's (.+\?)$"), r"What is \1"),
    (re.compile(r"^How many (.+?) are (?:there )?in (the (?:image|picture|diagram|chart))\?$"),
     r"In \2, how many \1 are there?"),
    (re.compile(r"^How many (.+?) are there\?$"), r"What is the number of \1?"),
    (re.compile(r"^What (colou?r) is (the .+)\?$"), r"What is the \1 of \2?"),
    (re.compile(r"^Which (\w+) (has|is|does|was) (.+\?)$"), r"What \1 \2 \3"),
    (re.compile(r"^(" + "|".join(_IMPERATIVE) + r") (.+)$"), "PLEASE"),
)
_PREAMBLES_QUESTION = ("Please answer the following question: ", "Here is a question for you: ")
_PREAMBLES_TASK = ("Please do the following: ", "Here is a task for you: ")


def _pick(text: str, n: int, salt: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{TEMPLATE_RULES_VERSION}/{salt}/{text}".encode()).digest()[:8], "big") % n


def _swap_words(text: str) -> str:
    """The synonym table, outside double quotes, keeping the first letter's case."""
    def one(m: re.Match) -> str:
        word = m.group(0)
        new = _WORD_SWAPS[word.lower()]
        return new[0].upper() + new[1:] if word[0].isupper() else new

    parts = _QUOTED_SPLIT.split(text)
    return "".join(p if p.startswith('"') else _SWAP_RE.sub(one, p) for p in parts)


def _lower_first(text: str) -> str:
    first = text.split(" ", 1)[0]
    if first.endswith(":") or first == "I" or not (first[1:].islower() or len(first) == 1):
        return text          # a label ("Question:"), "I", a name or an acronym keeps its case
    return text[:1].lower() + text[1:]


def template_paraphrase(text: str) -> str:
    """The deterministic rewording `TemplateParaphraseBackend` applies to one question."""
    body = text.strip()
    single_line = "\n" not in body
    options = []
    if single_line:
        for pattern, repl in _STRUCTURAL:
            m = pattern.match(body)
            if not m:
                continue
            if repl == "PLEASE":
                verb = m.group(1)
                options.append(f"Please {_VERB_SWAPS.get(verb, verb).lower()} {m.group(2)}")
            else:
                options.append(m.expand(repl))
    if options:
        out = options[_pick(body, len(options), "structure")]
    else:
        pre = _PREAMBLES_QUESTION if body.endswith("?") else _PREAMBLES_TASK
        out = pre[_pick(body, len(pre), "preamble")] + _lower_first(body)
    out = _swap_words(out)
    if " ".join(out.casefold().split()) == " ".join(body.casefold().split()):
        pre = _PREAMBLES_QUESTION if body.endswith("?") else _PREAMBLES_TASK
        out = pre[0] + _lower_first(body)
    return out


class TemplateParaphraseBackend:
    """Rule-based question rewording (see the module docstring) — not a language model.
    Deterministic: the same text always gets the same rewrite, in any process."""

    name = "template"
    model_id = "template-paraphrase"
    style = "paraphrase"
    prompt_version = TEMPLATE_RULES_VERSION

    def rephrase(self, texts: list[str]) -> list[str]:
        return [template_paraphrase(t) for t in texts]

    def close(self) -> None:
        pass


# ----------------------------------------------------------------------------- language models

_FINGERPRINT_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                      "chat_template.jinja", "special_tokens_map.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_EDGE_BYTES = 1 << 20


def model_fingerprint(model: str | os.PathLike) -> str:
    """A cache identity for a model: for a directory, its name plus a hash of the config and
    tokenizer files and of each weight file's size and first/last MiB (cheap even for large
    checkpoints, and different for two random initialisations); otherwise the hub id as given."""
    path = Path(model)
    if not path.is_dir():
        return str(model)
    h = hashlib.sha256()
    for name in _FINGERPRINT_FILES:
        f = path / name
        if f.is_file():
            h.update(name.encode() + b"\0" + f.read_bytes() + b"\0")
    for f in sorted(p for p in path.iterdir() if p.name.endswith(_WEIGHT_SUFFIXES)):
        size = f.stat().st_size
        with open(f, "rb") as fh:
            head = fh.read(_EDGE_BYTES)
            fh.seek(max(0, size - _EDGE_BYTES))
            tail = fh.read(_EDGE_BYTES)
        h.update(f"{f.name}\0{size}\0".encode() + head + tail)
    return f"{path.name}@{h.hexdigest()[:16]}"


def _spec(style: str) -> PromptSpec:
    if style not in PROMPTS:
        raise ValueError(f"unknown rephrase style {style!r}; expected one of {sorted(PROMPTS)}")
    return PROMPTS[style]


def render_prompts(tokenizer, spec: PromptSpec, texts: list[str]) -> list[str]:
    """Prompt strings: the tokenizer's chat template with a generation prompt when it has one,
    otherwise the plain instruction followed by a ``Rewritten <role>:`` cue."""
    if getattr(tokenizer, "chat_template", None):
        return [tokenizer.apply_chat_template([{"role": "user", "content": prompt_for(spec, t)}],
                                              add_generation_prompt=True, tokenize=False) for t in texts]
    return [f"{prompt_for(spec, t)}\nRewritten {spec.role}:" for t in texts]


class HFRephraseBackend:
    """`model_path`: a directory written by ``save_pretrained`` (a causal LM and its tokenizer),
    or a hub id already in the local cache. ``local_files_only`` when ``HF_HUB_OFFLINE`` is set
    or `model_path` is a directory. Greedy, `batch_size` prompts per ``generate`` call, sorted
    by length so a batch pads little; results in input order."""

    name = "hf"

    def __init__(self, model_path: str | os.PathLike, style: str = "paraphrase", *, batch_size: int = 8,
                 max_new_tokens: int | None = None, device: str = "cpu", dtype=None,
                 local_files_only: bool | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from mm_assets.vlm.tiny_llava import offline

        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.spec = _spec(style)
        self.style, self.prompt_version = style, self.spec.version
        self.batch_size = int(batch_size)
        self.max_new_tokens = int(max_new_tokens or self.spec.max_new_tokens)
        self.device = torch.device(device)
        p = str(model_path)
        if local_files_only is None:
            local_files_only = offline() or Path(p).is_dir()
        kw = dict(trust_remote_code=False, local_files_only=local_files_only)
        self.model_id = model_fingerprint(p)
        self.tokenizer = AutoTokenizer.from_pretrained(p, **kw)
        self.model = AutoModelForCausalLM.from_pretrained(p, dtype=dtype or torch.float32, **kw).to(self.device)
        self.model.eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            if self.tokenizer.eos_token_id is None:
                raise ValueError(f"{p}: the tokenizer has neither a pad nor an eos token; batched generation needs one")
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def rephrase(self, texts: list[str]) -> list[str]:
        import torch

        if self.model is None:
            raise RuntimeError("HFRephraseBackend is closed")
        if not texts:
            return []
        prompts = render_prompts(self.tokenizer, self.spec, texts)
        bos = self.tokenizer.bos_token
        lengths = [len(ids) for ids in self.tokenizer(prompts, add_special_tokens=False)["input_ids"]]
        order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
        results = [""] * len(prompts)
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        with torch.inference_mode():
            for s in range(0, len(order), self.batch_size):
                batch = order[s:s + self.batch_size]
                batch_prompts = [prompts[i] for i in batch]
                # a rendered chat that already starts with BOS must not get a second one
                add_special = not (bos and all(t.startswith(bos) for t in batch_prompts))
                inputs = self.tokenizer(batch_prompts, padding=True, add_special_tokens=add_special,
                                        return_tensors="pt").to(self.device)
                out = self.model.generate(**inputs, do_sample=False, num_beams=1, use_cache=True,
                                          max_new_tokens=self.max_new_tokens,
                                          pad_token_id=self.tokenizer.pad_token_id, eos_token_id=eos)
                new = out[:, inputs["input_ids"].shape[1]:]
                for i, text in zip(batch, self.tokenizer.batch_decode(new, skip_special_tokens=True)):
                    results[i] = text
        return results

    def close(self) -> None:
        import torch

        self.model = None
        gc.collect()
        if self.device.type == "cuda" and torch.cuda.is_available():
            torch.cuda.empty_cache()


class VLLMRephraseBackend:
    """The same prompts as `HFRephraseBackend`, generated by vLLM (GPU; the ``gpu`` extra).

    Uses vLLM's documented offline API: ``LLM(model=..., trust_remote_code=False, seed=...)``,
    ``LLM.generate([{"prompt": text}, ...], SamplingParams(temperature=0, max_tokens=n))`` —
    outputs in prompt order, text in ``output.outputs[0].text``. Prompts are rendered with the
    model's own tokenizer chat template (the text the HF back end feeds); vLLM tokenises a text
    prompt with special tokens, so a rendered BOS is dropped when the tokenizer adds one itself.
    vLLM batches continuously; there is no batch size. Other keyword arguments go to ``vllm.LLM``.
    """

    name = "vllm"

    def __init__(self, model_path: str | os.PathLike, style: str = "paraphrase", *,
                 max_new_tokens: int | None = None, dtype: str = "auto", seed: int = 0,
                 gpu_memory_utilization: float = 0.9, max_model_len: int | None = None, **llm_kwargs):
        from transformers import AutoTokenizer

        from mm_assets.evaluation.backends.base import tokenizer_adds_bos
        from mm_assets.evaluation.backends.vllm_backend import import_vllm

        vllm = import_vllm()       # RuntimeError with the install hint when vLLM is missing
        self.spec = _spec(style)
        self.style, self.prompt_version = style, self.spec.version
        self.max_new_tokens = int(max_new_tokens or self.spec.max_new_tokens)
        p = str(model_path)
        self.model_id = model_fingerprint(p)
        self.tokenizer = AutoTokenizer.from_pretrained(p, trust_remote_code=False)
        self._strip_bos = tokenizer_adds_bos(self.tokenizer)
        kw = dict(model=p, tokenizer=p, trust_remote_code=False, dtype=dtype, seed=seed,
                  gpu_memory_utilization=gpu_memory_utilization)
        if max_model_len is not None:
            kw["max_model_len"] = max_model_len
        kw.update(llm_kwargs)
        self._vllm = vllm
        self.llm = vllm.LLM(**kw)

    def rephrase(self, texts: list[str]) -> list[str]:
        if self.llm is None:
            raise RuntimeError("VLLMRephraseBackend is closed")
        if not texts:
            return []
        bos = self.tokenizer.bos_token
        prompts = []
        for text in render_prompts(self.tokenizer, self.spec, texts):
            if self._strip_bos and bos and text.startswith(bos):
                text = text[len(bos):]
            prompts.append({"prompt": text})
        params = self._vllm.SamplingParams(temperature=0.0, max_tokens=self.max_new_tokens, skip_special_tokens=True)
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [o.outputs[0].text for o in outputs]

    def close(self) -> None:
        from mm_assets.evaluation.backends.vllm_backend import shutdown_llm

        llm, self.llm = self.llm, None
        shutdown_llm(llm)


BACKENDS = ("template", "hf", "vllm")


def load_rephraser(backend: str, style: str = "paraphrase", model: str | None = None, **options) -> Rephraser:
    """``"template"`` (no model; paraphrase only), ``"hf"`` or ``"vllm"`` (`model` a local path)."""
    if backend == "template":
        if style != "paraphrase":
            raise ValueError(f"the template back end only paraphrases questions; style {style!r} needs 'hf' or 'vllm'")
        return TemplateParaphraseBackend()
    if backend in ("hf", "vllm"):
        if not model:
            raise ValueError(f"the {backend!r} rephrase back end needs a model path")
        cls = HFRephraseBackend if backend == "hf" else VLLMRephraseBackend
        return cls(model, style, **options)
    raise ValueError(f"unknown rephrase back end {backend!r}; expected one of {BACKENDS}")
