"""Turn stored runs into what a practitioner acts on: tables, Pareto plots, claim verdicts, a recommendation."""

from compressbench.report.claims import CLAIMS, Verdict, judge_claims
from compressbench.report.recommend import Recommendation, recommend
from compressbench.report.summary import RecipeSummary, summarise_runs
from compressbench.report.write import write_report

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
