"""Vocabularies: characters (default), words or BPE subwords, with encode/decode and an
unknown-symbol policy.

Character ids follow the code-point order of the distinct characters of the training text;
encoding is vectorised with NumPy (no per-character Python loop). Word tokens are the matches
of ``\\w+|[^\\w\\s]|\\s+`` (words, single punctuation marks, whitespace runs), so
``decode(encode(text)) == text``.

``max_vocab`` (word or char) keeps the ``max_vocab - 1`` most frequent tokens (ties: first
appearance first) plus ``<unk>`` at id 0, so ``<unk>`` counts towards ``max_vocab``; a
tokenizer built with ``max_vocab`` always has ``<unk>``, one built without never does.
Unknown symbols map to ``<unk>`` when there is one, else follow the ``unknown`` policy.
``<unk>`` decodes to U+FFFD (the replacement character), never to the literal ``<unk>``.

``bpe`` (optional, needs the ``tokenizers`` package) learns subword pieces with byte-pair
encoding over whole characters inside the word tokens above, so ``max_vocab`` is the target
vocabulary size (default 1024, ``<unk>`` at id 0 included) and every token is exact surface text.

The kinds live in ``tokenizer_base`` (the shared base class and its JSON form),
``tokenizer_plain`` (char, word) and ``tokenizer_bpe``. ``TOKENIZERS`` is the one registry of
kinds (name -> class): building, loading and ``chargen prepare`` all dispatch through it, so a
new kind is one ``Tokenizer`` subclass (``kind``, ``build``, ``from_chunks``, ``pieces``) and
one entry here. This module builds and loads them (``build_tokenizer``, ``load_tokenizer``)
and keeps their names importable from here.
"""

from __future__ import annotations

import os
from pathlib import Path

from chargen.atomic import loads_bounded, read_regular
from chargen.errors import ConfigError, TokenizerError
from chargen.tokenizer_base import (
    FORMAT,
    SHOWN_UNKNOWN,
    SMALL_DECODE,
    UNK,
    UNK_TEXT,
    UNKNOWN_POLICIES,
    VERSION,
    Tokenizer,
    UnknownSymbolsWarning,
)
from chargen.tokenizer_bpe import (
    BPE_CACHE_WORDS,
    BPE_DEFAULT_VOCAB,
    NEEDS_TOKENIZERS,
    BPETokenizer,
)
from chargen.tokenizer_plain import (
    CHUNK_CHARS,
    WORD_PATTERN,
    CharTokenizer,
    WordTokenizer,
    _word_pieces,
    cut_at_words,
)

__all__ = [
    "BPE_CACHE_WORDS",
    "BPE_DEFAULT_VOCAB",
    "CHUNK_CHARS",
    "FORMAT",
    "KINDS",
    "MAX_TOKENIZER_BYTES",
    "NEEDS_TOKENIZERS",
    "SHOWN_UNKNOWN",
    "SMALL_DECODE",
    "TOKENIZERS",
    "UNK",
    "UNKNOWN_POLICIES",
    "UNK_TEXT",
    "VERSION",
    "WORD_PATTERN",
    "BPETokenizer",
    "CharTokenizer",
    "Tokenizer",
    "UnknownSymbolsWarning",
    "WordTokenizer",
    "_word_pieces",
    "build_tokenizer",
    "cut_at_words",
    "load_tokenizer",
]

TOKENIZERS: dict[str, type[Tokenizer]] = {
    cls.kind: cls for cls in (CharTokenizer, WordTokenizer, BPETokenizer)
}
KINDS = tuple(TOKENIZERS)  # ("char", "word", "bpe")


def build_tokenizer(kind: str, text: str, *, max_vocab: int | None = None) -> Tokenizer:
    """A new vocabulary of ``kind`` (``char`` | ``word`` | ``bpe``) from ``text``; see the module
    notes. ``bpe`` needs the ``tokenizers`` package (ConfigError naming it when missing)."""
    cls = TOKENIZERS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ConfigError(f"--tokenizer must be {' or '.join(KINDS)}, got {kind!r}")
    return cls.build(text, max_vocab)


MAX_TOKENIZER_BYTES = 1 << 30


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Read a tokenizer JSON file; a one-line TokenizerError naming the file when it is
    missing, not a regular file, larger than ``MAX_TOKENIZER_BYTES``, unreadable, not JSON
    (or nested too deeply), or not a chargen tokenizer."""
    path = Path(path)
    if not os.path.lexists(path):
        raise TokenizerError(f"{path}: tokenizer file not found")
    raw = read_regular(path, TokenizerError, MAX_TOKENIZER_BYTES)
    try:
        data = loads_bounded(raw.decode("utf-8"))
    except ValueError as exc:
        raise TokenizerError(f"{path}: corrupt tokenizer file, not UTF-8 JSON ({exc})") from None
    try:
        return Tokenizer.from_dict(data)
    except TokenizerError as exc:
        raise TokenizerError(f"{path}: {exc}") from None
