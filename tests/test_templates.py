"""Assistant-only loss masks, checked token by token against expectations derived another way."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from instructkit.records import Record
from instructkit.templates import IGNORE_INDEX, ChatTemplate, Dropped, TemplateError

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# Llama-2 style: turns are delimited by plain text, not special tokens.
LLAMA2 = (
    "{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}"
    "{% elif m['role'] == 'assistant' %}{{ ' ' + m['content'] + ' </s>' }}{% endif %}{% endfor %}"
)

TWO_TURNS = Record.chat(
    [
        {"role": "user", "content": "Name a fruit."},
        {"role": "assistant", "content": "An apple."},
        {"role": "user", "content": "Another one?"},
        {"role": "assistant", "content": "A pear, then."},
    ]
)


def tiny_tokenizer(template: str | None) -> PreTrainedTokenizerFast:
    """A word-level tokenizer built here, so the fast tests need no model files."""
    words = "user assistant system Name a fruit An apple Another one A pear then INST s . ? , [ ] / < > ! Hi".split()
    vocab = {w: i for i, w in enumerate(["[UNK]", "<|im_start|>", "<|im_end|>", *dict.fromkeys(words)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="<|im_end|>")
    fast.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    fast.chat_template = template
    return fast


def chatml_expectation(ids: list[int], im_start: int, im_end: int, header: list[int]) -> list[int]:
    """Walk the ids: after <|im_start|> + 'assistant' header, train up to and including <|im_end|>."""
    labels = [IGNORE_INDEX] * len(ids)
    i = 0
    while i < len(ids):
        if ids[i] == im_start and ids[i + 1 : i + 1 + len(header)] == header:
            j = i + 1 + len(header)
            while ids[j] != im_end:
                labels[j] = ids[j]
                j += 1
            labels[j] = ids[j]  # the end-of-turn token is trained: the model must learn to stop
            i = j
        i += 1
    return labels


def segment_expectation(tok, pieces: list[tuple[str, bool]]) -> tuple[list[int], list[int]]:
    """Tokenize each piece alone and concatenate; trained pieces keep their ids."""
    ids, labels = [], []
    for text, trained in pieces:
        piece = tok(text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if trained else [IGNORE_INDEX] * len(piece)
    return ids, labels


def test_chatml_tiny_matches_expectation() -> None:
    tok = tiny_tokenizer(CHATML)
    sample = ChatTemplate(tok).encode(TWO_TURNS)
    header = tok("assistant", add_special_tokens=False)["input_ids"]
    im_start, im_end = tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    assert sample.labels == chatml_expectation(sample.input_ids, im_start, im_end, header)
    trained = [t for t, lab in zip(sample.input_ids, sample.labels, strict=True) if lab != IGNORE_INDEX]
    assert tok.decode(trained).split() == "An apple . <|im_end|> A pear , then . <|im_end|>".split()


def test_llama2_tiny_matches_expectation() -> None:
    tok = tiny_tokenizer(LLAMA2)
    sample = ChatTemplate(tok).encode(TWO_TURNS)
    ids, labels = segment_expectation(
        tok,
        [
            ("[INST] Name a fruit. [/INST]", False),
            (" An apple. </s>", True),
            ("[INST] Another one? [/INST]", False),
            (" A pear, then. </s>", True),
        ],
    )
    assert sample.input_ids == ids
    assert sample.labels == labels


def test_system_and_user_never_trained() -> None:
    tok = tiny_tokenizer(CHATML)
    rec = Record.chat([{"role": "system", "content": "Hi"}, *[m.to_dict() for m in TWO_TURNS.messages]])
    sample = ChatTemplate(tok).encode(rec)
    text_of_trained = tok.decode(
        [t for t, lab in zip(sample.input_ids, sample.labels, strict=True) if lab != -100]
    )
    assert "Hi" not in text_of_trained and "Name" not in text_of_trained and "Another" not in text_of_trained
    assert sample.n_trained == 10  # "An apple . <|im_end|>" + "A pear , then . <|im_end|>"


def test_missing_template_is_a_clear_error() -> None:
    with pytest.raises(TemplateError, match="no chat template"):
        ChatTemplate(tiny_tokenizer(None), name="tiny")


def test_serve_prompt_mismatch_is_detected() -> None:
    # Generation prompt says "bot", training renders "assistant": the model would be served a prompt it never saw.
    bad = CHATML.replace("'<|im_start|>assistant\\n'", "'<|im_start|>A\\n'")
    with pytest.raises(TemplateError, match="train/serve template mismatch at message 1"):
        ChatTemplate(tiny_tokenizer(bad)).encode(TWO_TURNS)


def test_history_rewriting_template_is_detected() -> None:
    rewrites = (
        "{% for m in messages %}{% if m['role'] == 'assistant' and not loop.last %}{{ '<|im_start|>assistant\\n!<|im_end|>\\n' }}"
        "{% else %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    with pytest.raises(TemplateError, match="differently once later turns follow"):
        ChatTemplate(tiny_tokenizer(rewrites)).encode(TWO_TURNS)


def test_truncation_keeps_whole_turns_and_drops_with_reason() -> None:
    tok = tiny_tokenizer(CHATML)
    template = ChatTemplate(tok)
    full = template.encode(TWO_TURNS)
    first_only = template.encode(Record.chat([m.to_dict() for m in TWO_TURNS.messages[:2]]))
    cut = template.encode(TWO_TURNS, max_length=len(full.input_ids) - 1)
    assert cut.truncated and cut.input_ids == first_only.input_ids and cut.labels == first_only.labels
    # Shorter than the first exchange: its reply is cut, still trained where it fits.
    prompt_len = first_only.labels.index(next(x for x in first_only.labels if x != IGNORE_INDEX))
    partial = template.encode(TWO_TURNS, max_length=prompt_len + 2)
    assert partial.n_trained == 2
    dropped = template.encode(TWO_TURNS, max_length=prompt_len)
    assert isinstance(dropped, Dropped) and dropped.reason == "prompt_exceeds_max_length"
    samples, stats, gone = template.encode_all([TWO_TURNS, TWO_TURNS], max_length=prompt_len)
    assert samples == [] and stats.dropped == {"prompt_exceeds_max_length": 2} and len(gone) == 2


# ------------------------------------------------------------------------- the real bundled model
@pytest.fixture(scope="module")
def smollm_tokenizer():
    from instructkit.models import load_tokenizer, prepare

    prepare("smollm2-135m-instruct")
    return load_tokenizer("smollm2-135m-instruct")


@pytest.mark.slow
@pytest.mark.requires_models
def test_smollm2_template_masks(smollm_tokenizer) -> None:
    tok = smollm_tokenizer
    sample = ChatTemplate(tok).encode(TWO_TURNS)
    header = tok("assistant\n", add_special_tokens=False)["input_ids"]
    im_start, im_end = tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    assert sample.labels == chatml_expectation(sample.input_ids, im_start, im_end, header)
    # The default system prompt SmolLM2's template adds is context, never trained.
    assert tok.decode(sample.input_ids).count("<|im_start|>system") == 1
    trained = [t for t, lab in zip(sample.input_ids, sample.labels, strict=True) if lab != IGNORE_INDEX]
    assert tok.decode(trained) == "An apple.<|im_end|>A pear, then.<|im_end|>"


@pytest.mark.slow
@pytest.mark.requires_models
def test_smollm2_tokenizer_with_llama2_template(smollm_tokenizer) -> None:
    tok = smollm_tokenizer
    sample = ChatTemplate(tok, LLAMA2).encode(TWO_TURNS)
    ids, labels = segment_expectation(
        tok,
        [
            ("[INST] Name a fruit. [/INST]", False),
            (" An apple. </s>", True),
            ("[INST] Another one? [/INST]", False),
            (" A pear, then. </s>", True),
        ],
    )
    assert sample.input_ids == ids
    assert sample.labels == labels
