"""The sweep report's statistics: floor marks, DS - NDS tests across seeds, findings in words."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from kdfair_cli.classifier.report import FLOOR_MARK, conclusions, deltas, metric_columns, summarise, to_markdown


def _results() -> pd.DataFrame:
    rows = []
    nds_eod, ds_eod = [20.0, 22.0, 21.0], {2.0: [12.0, 13.0, 12.5], 5.0: [20.5, 21.5, 22.5]}
    for s, v in enumerate(nds_eod):
        rows.append({"model": "nds", "temperature": math.nan, "seed": s, "accuracy": 90.0, "eod_color": v,
                     "eod_color_excess": v - 15.0,
                     "eod_color_null_mean": 15.0, "eod_color_null_q95": 19.0, "eod_color_p": 0.01,
                     "individual_fairness": 0.1 + 0.01 * s})
    for t, vals in ds_eod.items():
        for s, v in enumerate(vals):
            rows.append({"model": "ds", "temperature": t, "seed": s, "accuracy": 95.0, "eod_color": v,
                         "eod_color_excess": v - 12.0,
                         "eod_color_null_mean": 12.0, "eod_color_null_q95": 15.0, "eod_color_p": 0.4,
                         "individual_fairness": 0.1 + 0.01 * s})
    return pd.DataFrame(rows)


def test_deltas_are_welch_over_seeds_with_holm() -> None:
    res = _results()
    d = deltas(res, ["color"])
    row = d[(d["temperature"] == 2.0) & (d["metric"] == "eod_color")].iloc[0]
    ref = stats.ttest_ind([12.0, 13.0, 12.5], [20.0, 22.0, 21.0], equal_var=False)
    assert row["delta"] == pytest.approx(12.5 - 21.0) and row["p"] == pytest.approx(ref.pvalue)
    raw = d[d["family"] == "raw"]
    assert row["family"] == "raw" and set(raw["metric"]) == {"eod_color"}
    m = raw["p"].notna().sum()
    assert row["p_holm"] == pytest.approx(min(1.0, row["p"] * m))  # the smallest p: times m
    # the headline family: the excess (Welch over per-seed excess values) and IF
    head = d[d["family"] == "excess"]
    assert set(head["metric"]) == {"eod_color_excess", "individual_fairness"}
    ex = head[(head["temperature"] == 2.0) & (head["metric"] == "eod_color_excess")].iloc[0]
    ref = stats.ttest_ind([0.0, 1.0, 0.5], [5.0, 7.0, 6.0], equal_var=False)
    assert ex["delta"] == pytest.approx(0.5 - 6.0) and ex["p"] == pytest.approx(ref.pvalue)
    # identical per-seed values: no difference, p = 1
    same = d[d["metric"] == "individual_fairness"]
    assert (same["delta"].abs() < 1e-12).all() and (same["p"] == 1).all()


def test_table_marks_values_within_their_floor_and_findings_name_the_significant() -> None:
    res = _results()
    table = summarise(res)
    md = to_markdown(table, metric_columns(res))
    lines = {ln.split("|")[1].strip() + ln.split("|")[2].strip(): ln for ln in md.splitlines()[2:]}
    assert FLOOR_MARK not in lines["NDS-"]  # 21.0 > q95 19.0
    assert f"12.50 ± 0.50 {FLOOR_MARK}" in lines["DS2"]  # 12.5 <= 15.0
    assert FLOOR_MARK not in lines["DS5"]  # 21.5 > 15.0
    assert "null" not in md.splitlines()[0]  # floors are marks, not columns
    said = conclusions(table, deltas(res, ["color"]))
    assert said[0].startswith("1 of 3 EOD/DPD values")
    assert any(s.startswith("Significant: DS at T = 2 has lower EOD color excess than NDS")
               and s.endswith("fairer beyond what its accuracy implies.") for s in said)
    assert any(s.startswith("Significant: DS at T = 5 has higher EOD color excess") and "less fair" in s
               for s in said)  # raw EOD equal to the NDS's, but at a lower floor
    assert "+0.50 ± 0.50" in lines["DS2"]  # the excess column
    assert "DS - NDS difference(s) are significant" in said[-1]


def test_one_seed_gives_no_test() -> None:
    res = _results()
    res = res[res["seed"] == 0]
    d = deltas(res, ["color"])
    assert d["p"].isna().all()
    assert conclusions(summarise(res), d)[-1] == "DS vs NDS: fewer than 2 seeds a side, so no test across seeds."


def test_results_of_an_old_sweep_without_floors_get_no_marks() -> None:
    res = _results().drop(columns=["eod_color_null_mean", "eod_color_null_q95", "eod_color_p",
                                   "eod_color_excess"])
    table = summarise(res)
    assert FLOOR_MARK not in to_markdown(table, metric_columns(res))
    said = conclusions(table, deltas(res, ["color"]))
    assert not any("noise floor" in s for s in said) and said[0].startswith("No excess EOD/DPD")
    assert said[1].startswith("Significant: DS at T = 2 has lower EOD color than NDS")


def test_an_accuracy_gap_alone_is_not_called_a_fairness_difference() -> None:
    res = _results()
    # Same excess for DS and NDS: the DS's lower raw EOD is its lower floor (higher accuracy).
    res["eod_color_excess"] = [5.0, 6.0, 7.0] + [6.0, 5.0, 7.0] * 2
    d = deltas(res, ["color"])
    said = conclusions(summarise(res), d)
    assert not any(s.startswith("Significant") for s in said)
    raw = d[(d["family"] == "raw") & (d["temperature"] == 2.0)].iloc[0]
    assert raw["p"] < 0.01  # the raw test alone would have called it
