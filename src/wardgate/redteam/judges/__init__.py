"""Judges: did an attack work? Refusal rules, (request, answer) pair judges, an LLM judge,
and the validation that says how far each can be trusted (``wardgate redteam judges validate``).

The default for harmful items is the judge with the best measured agreement with human labels
on the shipped set's held-out test split (:func:`~.validate.agreement_of`); every run records
which judge decided and that figure.
"""

from wardgate.redteam.judges.base import LABELS, SUCCESS_LABELS, PairVerdict, ResponseJudge
from wardgate.redteam.judges.panel import (
    STRONGREJECT_RUBRIC,
    STRONGREJECT_SYSTEM,
    ComplianceHeuristic,
    GuardHarmClassifier,
    HarmClassifier,
    Judgement,
    JudgePanel,
    PairClassifier,
    StrongRejectJudge,
    contains_normalised,
    detect_refusal,
    normalise,
    parse_strongreject,
)
from wardgate.redteam.judges.refusal import RefusalAnalysis, analyse_refusal
from wardgate.redteam.judges.rules import RulesJudge

__all__ = [
    "LABELS",
    "STRONGREJECT_RUBRIC",
    "STRONGREJECT_SYSTEM",
    "SUCCESS_LABELS",
    "ComplianceHeuristic",
    "GuardHarmClassifier",
    "HarmClassifier",
    "JudgePanel",
    "Judgement",
    "PairClassifier",
    "PairVerdict",
    "RefusalAnalysis",
    "ResponseJudge",
    "RulesJudge",
    "StrongRejectJudge",
    "analyse_refusal",
    "contains_normalised",
    "detect_refusal",
    "normalise",
    "parse_strongreject",
]
