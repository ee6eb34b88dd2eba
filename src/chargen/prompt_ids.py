"""A prompt's ids and the limits of a generation request, without torch: the command line's
plain path (``lite.py``) and ``generate`` share them."""

from __future__ import annotations

from chargen.errors import ConfigError, TokenizerError
from chargen.tokenizer import Tokenizer

MAX_LENGTH = 1_000_000
MAX_SAMPLES = 4096


def encode_prompt(tokenizer: Tokenizer, prompt: str, unknown: str = "warn") -> list[int]:
    """Prompt -> ids under the unknown-symbol policy (``warn`` | ``drop`` | ``error``).

    A prompt that is not empty but whose every symbol is unknown is an error: generating from
    nothing would silently ignore what the user asked for.
    """
    if unknown not in ("warn", "drop", "error"):
        raise ConfigError(f"--unknown must be warn, drop or error, got {unknown!r}")
    if (
        prompt
        and tokenizer.unk_id is None
        and len(tokenizer.unknown_symbols(prompt)) == len(set(tokenizer.split(prompt)))
    ):
        raise TokenizerError(
            f"every symbol of the prompt {prompt[:40]!r} is missing from the model's vocabulary; "
            "use symbols the training text contains"
        )
    return tokenizer.encode(prompt, unknown=unknown).tolist()


def start_token(tokenizer: Tokenizer) -> int:
    """The token an empty prompt starts from: a newline when the vocabulary has one, else id 0."""
    try:
        return int(tokenizer.vocab.index("\n"))
    except ValueError:
        return 0


def token_strings(tokenizer: Tokenizer) -> list[str]:
    """The text of every token, by id (``<unk>`` as U+FFFD): the vocabulary constraints read."""
    return tokenizer.token_texts(range(tokenizer.vocab_size))


def check_request(length: int, num_samples: int) -> None:
    if isinstance(length, bool) or not isinstance(length, int) or not 0 <= length <= MAX_LENGTH:
        raise ConfigError(f"--length must be an integer in [0, {MAX_LENGTH}], got {length!r}")
    if (
        isinstance(num_samples, bool)
        or not isinstance(num_samples, int)
        or not 1 <= num_samples <= MAX_SAMPLES
    ):
        raise ConfigError(
            f"--num-samples must be an integer in [1, {MAX_SAMPLES}], got {num_samples!r}"
        )
