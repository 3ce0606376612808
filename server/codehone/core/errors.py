"""One error family for codehone, so every edge (CLI, LSP) can translate it in one place.

The message of a CodehoneError is written for the user: one clear line naming the problem,
with no traceback and no internal detail.
"""

from __future__ import annotations


class CodehoneError(Exception):
    """Base of every error codehone raises on purpose."""


class ModelDirError(CodehoneError):
    """A model directory is missing, malformed, or does not match its manifest."""


class ExportError(CodehoneError):
    """Exporting a checkpoint to a model directory failed or did not verify."""


class GenerationError(CodehoneError):
    """The model failed while generating."""


class TrainingError(CodehoneError):
    """Bad input or a failure in corpus building, pretraining or fine-tuning."""
