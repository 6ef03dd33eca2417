"""kdfair's Python API: the metrics of the CLI for paths, pandas DataFrames and arrays.

Every function returns a plain result object whose `to_dict()` is exactly what the matching
command prints with `--json`; the CLI and the sweep are built on these functions. Importing
this package does not import torch. See docs/api.md.
"""

from kdfair_cli.api.bias_score import BiasScore, bias_score
from kdfair_cli.api.classes import ClassComparisonResult, compare_classes
from kdfair_cli.api.group import AttributeFairness, GroupFairnessResult, group_fairness
from kdfair_cli.api.individual import IndividualFairnessResult, individual_fairness
from kdfair_cli.api.pairs import PairsResult, pairs
from kdfair_cli.api.predictions import read_pair_set, read_predictions
from kdfair_cli.api.report import ReportResult, report
from kdfair_cli.io.pairs_file import PairSet
from kdfair_cli.io.predictions import Predictions

__all__ = [
    "AttributeFairness", "BiasScore", "ClassComparisonResult", "GroupFairnessResult", "IndividualFairnessResult",
    "PairSet", "PairsResult", "Predictions", "ReportResult", "bias_score", "compare_classes", "group_fairness",
    "individual_fairness", "pairs", "read_pair_set", "read_predictions", "report",
]
