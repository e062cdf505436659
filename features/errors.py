"""Named domain errors. Each boundary (HTTP, CLI) maps them to a response once, in one place."""

from __future__ import annotations

from dataclasses import dataclass


class LenriskError(Exception):
    """Base of every error lenrisk raises on purpose; its message is safe to show (no patient data)."""


@dataclass(frozen=True)
class RowError:
    """One broken rule in one cell: 1-based data row (header excluded), column, rule in words."""

    row_number: int
    column: str
    reason: str
    patient_id: str | None = None

    def __str__(self) -> str:
        return f"row {self.row_number}, column {self.column}: {self.reason}"


class ContractError(LenriskError, ValueError):
    """Data that break the record contract; ``errors`` lists every broken rule found."""

    def __init__(self, message: str, errors: list[RowError] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []

    def summary(self, limit: int = 20) -> str:
        """The message, then the first ``limit`` row errors and how many more there are."""
        lines = [str(self)] + [f"  {e}" for e in self.errors[:limit]]
        if len(self.errors) > limit:
            lines.append(f"  ... and {len(self.errors) - limit} more")
        return "\n".join(lines)


class FileFormatError(LenriskError):
    """A whole file cannot be read as a contract table (unreadable, wrong format, missing columns)."""


class ArtifactError(LenriskError):
    """A saved model that cannot be loaded as written (missing file, wrong format, digest mismatch)."""
