"""What the report computes: the ranked metric, the emergence threshold's level and bootstrap, the verdict bounds."""

from __future__ import annotations

from pydantic import Field

from onlyif.config import Config
from onlyif.report.findings import FindingConfig

DEFAULT_METRIC = "test_unseen/exact_match_applied"


class ReportConfig(Config):
    """The analysis written at the end of the sweep (and by ``onlyif report``)."""

    metric: str = DEFAULT_METRIC
    """The metric whose emergence is fitted: unseen-rule exact match on applied (non-no-op) examples. A mixture
    sweep ranks its points by it instead; there it defaults to the first eval split's loss (``<split>/loss``)."""
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    """Accuracy level whose crossing in I defines the emergence threshold."""
    bootstrap: int = Field(1000, ge=10)
    """Bootstrap resamples for the threshold interval."""
    low: float = Field(0.1, ge=0.0, le=1.0)
    """Accuracy at or below which a point counts as "does not generalize"."""
    high: float = Field(0.8, ge=0.0, le=1.0)
    """Accuracy at or above which a point counts as "generalizes"."""
    finding: FindingConfig | None = None
    """A finding beyond emergence and its criteria (``onlyif reproduce --experiment``); when set, its verdict is
    the report's ``shown``."""
