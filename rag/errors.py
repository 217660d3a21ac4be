"""User-facing errors. Each carries a hint that says how to fix the problem;
the CLI and the UI print `message` and `hint` on one line instead of a traceback."""

from __future__ import annotations


class RagError(Exception):
    """Base of every error a user can act on."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class ConfigError(RagError):
    """A setting or an environment variable has a value that cannot work."""


class CorpusError(RagError):
    """A source document or manifest cannot be used."""


class IndexNotFoundError(RagError):
    """No index has been built yet in the configured data directory."""


class IndexMismatchError(RagError):
    """The index was built with another embedder or normaliser."""


class DatasetError(RagError):
    """A benchmark dataset is malformed."""


class MissingExtraError(RagError):
    """An optional dependency is not installed."""

    def __init__(self, feature: str, extra: str, packages: str) -> None:
        super().__init__(
            f"{feature} needs the optional dependencies {packages}",
            hint=f"install them with: pip install -e '.[{extra}]'",
        )


class StoreFullError(RagError):
    """A store kept within a configured size has no room left."""


class LLMError(RagError):
    """The configured language model could not be reached or answered badly."""
