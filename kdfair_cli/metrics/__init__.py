"""Metrics: pure numpy/scipy, importable without torch (checked by a test).

class_bias: class-wise accuracy tests (Welch over seeds, exact McNemar) and disagreement.
multiple_testing: Holm and Benjamini-Hochberg adjusted p-values.
group: demographic parity and equalised odds differences, per group and class, bootstrap CIs.
individual: the individual-fairness score I(f) over a fixed pair set, and its per-pair ratios.
null: the noise floor of DPD and EOD (permutation null by random contingency tables).
paired: paired tests and intervals for A minus B, seed combination, individual-fairness CIs.
pairs: exact kNN pairs and counterfactual twin pairs.
"""
