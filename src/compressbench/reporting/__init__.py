"""Turn stored runs into what a practitioner acts on: tables, Pareto plots, claim verdicts, a recommendation."""

from compressbench.reporting.claims import CLAIMS, Verdict, judge_claims
from compressbench.reporting.recommend import Recommendation, recommend
from compressbench.reporting.summary import RecipeSummary, summarise_runs
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
