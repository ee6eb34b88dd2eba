"""Errors a user can cause. The CLI prints ``str(err)`` on one line and exits with status 2."""

from __future__ import annotations


class ChargenError(Exception):
    """Base class for every error caused by user input or the user's files."""

    exit_code: int = 2


class CorpusError(ChargenError):
    """A source path, folder, glob or named corpus that cannot be read as text."""


class DecodeError(CorpusError):
    """Bytes that the chosen encoding cannot decode (names the file and byte offset)."""


class TokenizerError(ChargenError):
    """An unusable vocabulary or text with symbols the vocabulary lacks."""


class ConfigError(ChargenError):
    """An option or configuration value out of range or incompatible with another."""


class SamplingError(ConfigError):
    """A sampling parameter out of range (temperature < 0, top-p outside (0, 1], ...)."""


class CheckpointError(ChargenError):
    """A run directory that is missing, corrupt, foreign or would be overwritten."""


class TrainingError(ChargenError):
    """Training cannot go on (a NaN loss, a corpus too short for one batch, ...)."""


class GenerationError(ChargenError):
    """Generation cannot go on (the model's scores are not finite numbers)."""
