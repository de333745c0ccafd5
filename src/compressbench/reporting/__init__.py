"""Turn stored runs into what a practitioner acts on: tables, Pareto plots, claim verdicts, a recommendation."""

from compressbench.ranking import RecipeSummary, Recommendation, recommend, summarise_runs
from compressbench.reporting.claims import CLAIMS, Verdict, judge_claims
from compressbench.reporting.write import write_report

__all__ = [
    "CLAIMS",
    "Recommendation",
    "RecipeSummary",
    "Verdict",
    "judge_claims",
    "recommend",
    "summarise_runs",
    "write_report",
]
