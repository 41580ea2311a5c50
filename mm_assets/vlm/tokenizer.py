"""The VLM's tokenizer: byte-level BPE trained with ``tokenizers``, LLaVA-style chat template.

Special tokens (ids fixed, in this order): ``<pad>`` 0, ``<s>`` 1 (BOS), ``</s>`` 2 (EOS),
``<image>`` 3. Byte-level, so every string tokenises without ``<unk>`` and decodes back
exactly.

BOS policy (exactly one BOS in a tokenised chat, whichever way it is tokenised)
------------------------------------------------------------------------------
The **chat template** writes ``<s>``; the tokenizer's post-processor adds **nothing** (no BOS,
no EOS). So a rendered chat carries exactly one BOS when it is tokenised

* by ``tokenizer.apply_chat_template(..., tokenize=True)`` (transformers always tokenises a
  rendered chat with ``add_special_tokens=False`` there),
* by ``processor.apply_chat_template(..., tokenize=True)`` (the processor switches
  ``add_special_tokens`` off when the rendered text starts with the BOS string),
* by ``tokenizer(rendered)`` / ``processor(text=rendered, ...)`` with the default
  ``add_special_tokens=True``, and by vLLM's ``LLM.generate({"prompt": rendered, ...})``,
  which tokenises a text prompt with special tokens on.

The other choice (post-processor adds BOS, template does not) gives *zero* BOS through
``apply_chat_template(tokenize=True)``, and both together give the classic double BOS.
Consequence: ``tokenizer("plain text")`` has no BOS; text that is not a rendered chat gets
its BOS only if the caller puts it there.

Chat format (LLaVA-1.5 style)::

    <s>USER: <image>\\n{question} ASSISTANT: {answer}</s>USER: {question} ASSISTANT:

``content`` is a string (it may contain ``<image>`` itself, as Mammoth/LLaVA-format data does)
or a list of ``{"type": "image"}`` / ``{"type": "text", "text": ...}`` items (the HF processor
form; each image item renders as ``<image>\\n``). ``add_generation_prompt`` ends the text
with ``ASSISTANT:`` (no trailing space: byte-level BPE puts the space in front of the
answer's first word, so the prompt's tokens are a prefix of the full chat's tokens, which is
what label masking in training needs). A ``system`` message, if first, is written before the
first ``USER:``.

No Dagster import here.
"""

from __future__ import annotations

from collections.abc import Iterable

PAD, BOS, EOS, IMAGE = "<pad>", "<s>", "</s>", "<image>"
SPECIAL_TOKENS = [PAD, BOS, EOS, IMAGE]
USER, ASSISTANT = "USER:", "ASSISTANT:"

CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{%- if message['content'] is string -%}"
    "{%- set text = message['content'] -%}"
    "{%- else -%}"
    "{%- set ns = namespace(text='') -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{%- set ns.text = ns.text + '<image>\\n' -%}"
    "{%- elif item['type'] == 'text' -%}{%- set ns.text = ns.text + item['text'] -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- set text = ns.text -%}"
    "{%- endif -%}"
    "{%- if message['role'] == 'system' -%}{{- text + '\\n' -}}"
    "{%- elif message['role'] == 'user' -%}{{- 'USER: ' + text + ' ' -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{% generation %}{{- 'ASSISTANT: ' + text + eos_token -}}{% endgeneration %}"
    "{%- else -%}{{- raise_exception('unknown role: ' + message['role']) -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'ASSISTANT:' -}}{%- endif -%}"
)

# Always part of the training corpus, so the template's fixed words are single tokens and any
# printable ASCII text has short tokenisations even for a tiny corpus.
_BASE_CORPUS = [
    "USER: ASSISTANT: USER: <image>\n ASSISTANT:",
    " ".join(chr(c) for c in range(33, 127)),
    "the a an of to in is are what which how many much number value image picture chart graph "
    "show shown colour color total answer question describe find compute calculate word text yes no",
    "0 1 2 3 4 5 6 7 8 9 10 100 0.5 1.5",
]


def train_bpe_tokenizer(texts: Iterable[str] | None = None, vocab_size: int = 2048, min_frequency: int = 2):
    """A byte-level BPE trained on `texts`, as a ``PreTrainedTokenizerFast`` with the chat template.

    Deterministic for the same texts in the same order. ``len(tokenizer) <= vocab_size``
    (the corpus may not support that many merges). ``padding_side`` is ``"right"`` (for
    training); generation sets ``"left"``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = list(_BASE_CORPUS) + ([] if texts is None else [t for t in texts if t])
    tok.train_from_iterator(corpus, trainer)
    # No post-processor: BOS comes from the chat template only (see the module docstring).
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        extra_special_tokens={"image_token": IMAGE},
        padding_side="right", truncation_side="right", clean_up_tokenization_spaces=False,
        model_input_names=["input_ids", "attention_mask"])
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def render_chat(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    """The chat as text (``tokenize=False``), BOS included."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def user_message(prompt: str, with_image: bool) -> list[dict]:
    """One user turn in the HF processor form: ``[image item,] text item``."""
    content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": prompt}]
    return [{"role": "user", "content": content}]
