"""Boosted trees compiled to lookup tables: exact TreeSHAP and margins for one row in microseconds.

A tree's output and its SHAP values depend on a row only through which side of each of the tree's
split conditions the row falls (``x_f >= threshold``). A depth-3 tree has at most 7 distinct conditions,
so at most 128 patterns. At load time, for every tree, one representative row per feasible pattern is
explained by XGBoost itself (``pred_contribs`` of the one-tree slice of the booster); the
table stores those per-tree SHAP values. At prediction time a row's pattern per tree is a vector of
comparisons, and its SHAP values are a gather and a sum. Because TreeSHAP is additive over the trees of an
ensemble, the sum equals the ensemble's TreeSHAP values, and ``base + sum`` is the margin, accumulated in
float64 (XGBoost sums its trees in float32, off by up to ~3e-6 log-odds).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np
import xgboost as xgb

from features.encoding import FEATURE_NAMES
from features.errors import LenriskError

_FEW_ROWS = 64  # up to this many rows, one gather over all trees beats the column-wise loops
MAX_CONDITIONS = 10  # 2**10 patterns per tree at most (int16 holds 2**15): depth <= 3 gives 7; deeper refused

if MAX_CONDITIONS >= 15:  # 2**15 patterns would overflow int16
    raise RuntimeError("pattern indices are int16: MAX_CONDITIONS must stay below 15")


class TreeTableError(LenriskError):
    """A booster that cannot be compiled to tables (too deep, or an unexpected tree structure)."""


@dataclass(frozen=True)
class TreeTables:
    """Compiled booster: per-tree split conditions and per-pattern SHAP tables."""

    base: float  # the ensemble's expected margin (SHAP base value)
    cond_feature: np.ndarray  # (C,) feature index of each condition, all trees concatenated
    cond_threshold: np.ndarray  # (C,) float32 threshold; the condition is x >= threshold
    cond_weight: np.ndarray  # (C,) 2**(position of the condition within its tree)
    tree_start: np.ndarray  # (T,) index of each tree's first condition
    shap: np.ndarray  # (T, P, F) per-tree SHAP values by pattern (P = 2**max conditions per tree)
    leaf: np.ndarray  # (T, P) per-tree sum of SHAP values by pattern

    @classmethod
    def compile(cls, booster: xgb.Booster) -> TreeTables:
        """Compile ``booster`` (trained on :data:`FEATURE_NAMES`, no missing values at prediction)."""
        nodes = booster.trees_to_dataframe()
        splits = nodes[nodes["Feature"] != "Leaf"]
        n_trees = int(nodes["Tree"].max()) + 1
        index = {name: i for i, name in enumerate(FEATURE_NAMES)}
        per_tree: list[list[tuple[int, np.float32]]] = [[] for _ in range(n_trees)]
        for tree, feature, threshold in splits[["Tree", "Feature", "Split"]].itertuples(index=False):
            condition = (index[feature], np.float32(threshold))
            if condition not in per_tree[tree]:
                per_tree[tree].append(condition)
        widest = max((len(c) for c in per_tree), default=0)
        if widest > MAX_CONDITIONS:
            raise TreeTableError(
                f"a tree has {widest} split conditions; at most {MAX_CONDITIONS} can be tabled"
            )
        n_patterns = 2**widest
        shap_table = np.zeros((n_trees, n_patterns, len(FEATURE_NAMES)))
        dummy = xgb.DMatrix(
            np.zeros((1, len(FEATURE_NAMES)), dtype=np.float32), feature_names=list(FEATURE_NAMES)
        )
        base = float(booster.predict(dummy, pred_contribs=True)[0, -1])
        for tree, conditions in enumerate(per_tree):
            rows, patterns = _representatives(conditions)
            # DMatrix feature names cost milliseconds; the column order is FEATURE_NAMES by construction.
            contribs = booster[tree : tree + 1].predict(
                xgb.DMatrix(rows), pred_contribs=True, validate_features=False
            )
            shap_table[tree, patterns] = contribs[:, :-1]
        return cls(
            base=base,
            cond_feature=np.array([f for c in per_tree for f, _ in c], dtype=np.int64),
            cond_threshold=np.array([t for c in per_tree for _, t in c], dtype=np.float32),
            cond_weight=np.array([2**k for c in per_tree for k in range(len(c))], dtype=np.int64),
            tree_start=np.cumsum([0] + [len(c) for c in per_tree[:-1]]).astype(np.int64),
            shap=shap_table,
            leaf=shap_table.sum(axis=2),
        )

    def patterns(self, X: np.ndarray) -> np.ndarray:
        """(n, T) pattern index of each row in each tree."""
        above = X.astype(np.float32)[:, self.cond_feature] >= self.cond_threshold
        weighted = above * self.cond_weight.astype(np.int32)
        out = np.zeros((X.shape[0], len(self.tree_start)), dtype=np.int32)
        has_conditions = np.diff(np.append(self.tree_start, len(self.cond_feature))) > 0
        out[:, has_conditions] = np.add.reduceat(weighted, self.tree_start[has_conditions], axis=1)
        return out

    def margin(self, X: np.ndarray, *, chunk: int = 65_536) -> np.ndarray:
        """Log-odds (float64): base value plus the sum of every tree's SHAP values (many rows: column-wise
        like :meth:`contributions`)."""
        if X.shape[0] <= _FEW_ROWS:
            return self.base + self.leaf[np.arange(len(self.tree_start)), self.patterns(X)].sum(axis=1)
        return self.base + self._leaf_sums(X, chunk)

    def contributions(self, X: np.ndarray, *, chunk: int = 65_536) -> np.ndarray:
        """(n, F) SHAP values on the margin scale (TreeSHAP, path-dependent, as XGBoost computes it).

        A few rows (the API): one gather over every tree and feature. Many rows (batch): column-wise, one
        vectorised comparison per split condition and one gather per (tree, feature it splits on), a few
        hundred numpy calls per chunk whatever its size. Both add the same float64 table values.
        """
        if X.shape[0] <= _FEW_ROWS:
            return self.shap[np.arange(len(self.tree_start)), self.patterns(X)].sum(axis=1)
        return self._shap_sums(X, chunk)

    def _leaf_sums(self, X: np.ndarray, chunk: int) -> np.ndarray:
        """(n,) sum of every tree's SHAP values, column-wise in chunks of rows (the margin without base)."""
        out = np.zeros(X.shape[0])
        for start in range(0, X.shape[0], chunk):
            patterns = self._patterns_by_tree(
                np.ascontiguousarray(X[start : start + chunk].T, dtype=np.float32)
            )
            block = out[start : start + chunk]
            for tree, leaf in enumerate(self.leaf):
                block += leaf[patterns[tree].astype(np.intp)]
        return out

    def _shap_sums(self, X: np.ndarray, chunk: int) -> np.ndarray:
        """(n, F) SHAP values, column-wise in chunks of rows."""
        out = np.empty((X.shape[0], self.shap.shape[2]))
        for start in range(0, X.shape[0], chunk):
            rows = slice(start, start + chunk)
            patterns = self._patterns_by_tree(np.ascontiguousarray(X[rows].T, dtype=np.float32))
            block = np.zeros((self.shap.shape[2], patterns.shape[1]))  # (F, n)
            for tree, columns in enumerate(self._columns):
                index = patterns[tree].astype(np.intp)  # numpy gathers fastest with native indices
                for f, values in columns:
                    block[f] += values[index]
            out[rows] = block.T
        return out

    def _patterns_by_tree(self, XT: np.ndarray) -> np.ndarray:
        """(T, n) pattern index per tree of the rows of ``XT`` (features x rows, float32).

        int16 (patterns < 2**MAX_CONDITIONS) and preallocated buffers, faster than int64 temporaries; the
        gathers then index with ``intp`` copies, faster than narrower indices (figures: docs/batch.md).
        """
        patterns = np.zeros((len(self.tree_start), XT.shape[1]), dtype=np.int16)
        above = np.empty(XT.shape[1], dtype=bool)
        bit = np.empty(XT.shape[1], dtype=np.int16)
        for tree, feature, threshold, weight in self._conditions:
            np.greater_equal(XT[feature], threshold, out=above)
            patterns[tree] += np.multiply(above, weight, out=bit)
        return patterns

    @functools.cached_property
    def _conditions(self) -> list[tuple[int, int, np.float32, np.int16]]:
        tree_of = np.repeat(
            np.arange(len(self.tree_start)), np.diff(np.append(self.tree_start, len(self.cond_feature)))
        )
        return list(
            zip(
                tree_of.tolist(),
                self.cond_feature.tolist(),
                self.cond_threshold,
                self.cond_weight.astype(np.int16),
                strict=True,
            )
        )

    @functools.cached_property
    def _columns(self) -> list[list[tuple[int, np.ndarray]]]:
        """Per tree: (feature, per-pattern SHAP values) for every feature the tree splits on."""
        return [
            [(f, np.ascontiguousarray(table[:, f])) for f in np.flatnonzero(np.abs(table).sum(axis=0))]
            for table in self.shap
        ]


def _representatives(conditions: list[tuple[int, np.float32]]) -> tuple[np.ndarray, np.ndarray]:
    """One row per feasible pattern of ``conditions``, and each row's pattern index."""
    thresholds: dict[int, list[np.float32]] = {}
    for feature, threshold in conditions:
        thresholds.setdefault(feature, []).append(threshold)
    features = sorted(thresholds)
    # For each feature, one value per interval between its thresholds: below all, then each threshold.
    choices = [
        [np.nextafter(min(thresholds[f]), np.float32(-np.inf)), *sorted(thresholds[f])] for f in features
    ]
    rows = []
    for combo in itertools.product(*choices):
        row = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
        row[features] = combo
        rows.append(row)
    rows_arr = np.array(rows, dtype=np.float32).reshape(-1, len(FEATURE_NAMES))
    weights = np.array([2**k for k in range(len(conditions))], dtype=np.int64)
    cond_f = np.array([f for f, _ in conditions], dtype=np.int64)
    cond_t = np.array([t for _, t in conditions], dtype=np.float32)
    patterns = ((rows_arr[:, cond_f] >= cond_t) * weights).sum(axis=1) if conditions else np.zeros(1, int)
    return rows_arr, patterns
