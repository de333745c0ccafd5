"""What qualifies and what ranks, shared by the report, compress and the search: per-recipe summaries of stored runs
(mean and spread over seeds) and the recommendation rule; a search trial's feasibility and figure."""

from compressbench.ranking.rule import (
    MIN_SPEEDUP,
    NO_MECHANISM,
    Recommendation,
    credited_speedup,
    feasible,
    figure_of,
    recommend,
    speed_words,
)
from compressbench.ranking.summary import RecipeSummary, Stat, by_model, summarise_runs

__all__ = [
    "MIN_SPEEDUP",
    "NO_MECHANISM",
    "RecipeSummary",
    "Recommendation",
    "Stat",
    "by_model",
    "credited_speedup",
    "feasible",
    "figure_of",
    "recommend",
    "speed_words",
    "summarise_runs",
]
