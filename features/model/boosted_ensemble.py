"""The bootstrap refits behind a boosted model's uncertainty interval: B boosters scored as one table.

Training refits the boosted specification on every bootstrap resample of patients, with the development
encoder fixed, and Platt-calibrates each refit out of fold (``training.interval``). A refit's calibrated
logit is ``slope_b * margin_b(x) + intercept_b``; the interval needs every refit's logit of a row.

Scoring B boosters of T trees per request with XGBoost would cost B predictor calls. Instead the
``B * T`` trees are compiled at load into stacked lookup tables (:class:`StackedTrees`), margins only (no
SHAP, unlike :mod:`features.model.treetable`): every depth-<=3 tree is laid out as a complete binary tree
in heap order, its 7 split conditions point into the table of the distinct ``(feature, threshold)``
conditions of all trees, and its 8 leaves hold the leaf values (a leaf above depth 3 fills the leaves
below it). For a row, the distinct conditions are evaluated once, every tree's 7 condition bits are
gathered and packed into one byte, a 128-entry table maps that byte to the leaf the row reaches
(XGBoost goes right when ``x >= threshold``, in float32), and the leaf values are summed per refit in
float64: one vectorised pass over all ``B * T`` trees, equal to XGBoost's margins within its float32
summation (~1e-6 log-odds).

Artifact (every file digested by ``RiskModel.save``)::

    ensemble.json             family "xgboost", feature names, each refit's Platt calibration and booster file
    ensemble/refit_NNN.ubj    each refit's booster, XGBoost's native UBJSON

References: Riley RD, Collins GS. Biom J 2023;65:2200302 (the bootstrap models' spread of an individual's
predictions); Chen T, Guestrin C. XGBoost, KDD 2016 (the split rule and base score).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import xgboost as xgb

from features.encoding import FEATURE_NAMES
from features.errors import ArtifactError
from features.model.calibration import PlattCalibrator
from features.model.ensemble import FILE

FOLDER = "ensemble"
MAX_DEPTH = 3  # 7 conditions per tree pack into one byte (the 8th bit is a never-true condition)
_NODES = 2**MAX_DEPTH - 1
_LEAVES = 2**MAX_DEPTH
_BYTES_PER_CHUNK = 1 << 24  # gathered condition bytes per chunk of rows in bulk (16 MB)
_PACK = np.uint64(0x0102040810204080)  # times 8 little-endian 0/1 bytes: their bits in the top byte


def _leaf_of_pattern() -> np.ndarray:
    """(128,) the leaf (0-7) a row reaches from its 7 condition bits (bit k: heap node k goes right)."""
    out = np.zeros(2**_NODES, dtype=np.intp)
    for pattern in range(2**_NODES):
        node = 0
        for _ in range(MAX_DEPTH):
            node = 2 * node + 1 + ((pattern >> node) & 1)
        out[pattern] = node - _NODES
    return out


_LEAF_OF_PATTERN = _leaf_of_pattern()


@dataclass(frozen=True)
class StackedTrees:
    """The trees of B boosters as one table: ``margins(X)`` is (rows, B)."""

    cond_feature: np.ndarray  # (U + 1,) feature of each distinct condition; the last one is never true
    cond_threshold: np.ndarray  # (U + 1,) float32; the condition is x >= threshold
    tree_conditions: np.ndarray  # (N * 8,) intp: per tree, its heap nodes' condition indices, then never
    leaves: np.ndarray  # (N * 8,) float64 leaf values, per tree in heap order
    refit_start: np.ndarray  # (B,) index of each refit's first tree
    base: np.ndarray  # (B,) each booster's base margin

    @classmethod
    def compile(cls, boosters: Sequence[xgb.Booster]) -> StackedTrees:
        """Compile boosters trained on :data:`FEATURE_NAMES` (``binary:logistic``, numerical splits, depth
        at most :data:`MAX_DEPTH`); :class:`ArtifactError` otherwise. XGBoost's serialisation releases the
        GIL, so the boosters are laid out on as many threads as cores."""
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            layouts = list(pool.map(_layout, boosters))
        n_trees = [len(layout.leaves) for layout in layouts]
        first_tree = np.cumsum([0, *n_trees[:-1]], dtype=np.intp)
        distinct, index = np.unique(np.concatenate([lay.keys for lay in layouts]), return_inverse=True)
        never = len(distinct)
        nodes = np.full(sum(n_trees) * _NODES, never, dtype=np.intp)
        nodes[
            np.concatenate([lay.slots + _NODES * t for lay, t in zip(layouts, first_tree, strict=True)])
        ] = index
        nodes = nodes.reshape(-1, _NODES)
        return cls(
            cond_feature=np.append(distinct >> 32, 0).astype(np.intp),
            cond_threshold=np.append((distinct & 0xFFFFFFFF).astype(np.uint32).view(np.float32), np.inf),
            tree_conditions=np.column_stack([nodes, np.full(len(nodes), never)]).ravel(),
            leaves=np.concatenate([layout.leaves for layout in layouts]).ravel(),
            refit_start=first_tree,
            base=np.array([layout.base for layout in layouts]),
        )

    @property
    def size(self) -> int:
        """The number of boosters B."""
        return len(self.base)

    def margins(self, X: np.ndarray) -> np.ndarray:
        """(rows, B) every booster's margin of the encoded rows, in chunks of rows."""
        n_trees = len(self.leaves) // _LEAVES
        chunk = max(1, _BYTES_PER_CHUNK // len(self.tree_conditions))
        out = np.empty((X.shape[0], self.size))
        first_leaf = np.arange(n_trees, dtype=np.intp) * _LEAVES
        for start in range(0, X.shape[0], chunk):
            rows = np.asarray(X[start : start + chunk], dtype=np.float32)
            bits = rows[:, self.cond_feature] >= self.cond_threshold  # (rows, U + 1)
            # Every index is in range by construction: "clip" skips numpy's bounds checks (~7% faster).
            gathered = bits.take(self.tree_conditions, axis=1, mode="clip")  # (rows, N * 8)
            packed = (gathered.view("<u8") * _PACK) >> np.uint64(56)  # (rows, N): the 7 bits of each tree
            leaf = self.leaves.take(first_leaf + _LEAF_OF_PATTERN.take(packed, mode="clip"), mode="clip")
            out[start : start + chunk] = np.add.reduceat(leaf, self.refit_start, axis=1) + self.base
        return out


@dataclass(frozen=True)
class _Layout:
    """One booster's trees in heap order: its split conditions as ``feature << 32 | float32 bits`` keys and
    their slots (``tree * 7 + heap node``), the (trees, 8) leaf values and the base margin."""

    keys: np.ndarray
    slots: np.ndarray
    leaves: np.ndarray
    base: float


def _layout(booster: xgb.Booster) -> _Layout:
    """Lay out every tree of ``booster`` (XGBoost's JSON model) as a complete depth-3 tree."""
    learner = json.loads(bytes(booster.save_raw(raw_format="json")))["learner"]
    if (objective := learner["objective"]["name"]) != "binary:logistic":
        raise ArtifactError(f"a refit's objective is {objective!r}, not 'binary:logistic'")
    p = float(learner["learner_model_param"]["base_score"].strip("[]"))
    trees = learner["gradient_booster"]["model"]["trees"]
    if any(any(tree["split_type"]) for tree in trees):
        raise ArtifactError("a refit has categorical splits, which the stacked tables do not hold")
    sizes = [len(tree["left_children"]) for tree in trees]
    offset = np.repeat(np.cumsum([0, *sizes[:-1]]), sizes)
    tree_of = np.repeat(np.arange(len(trees)), sizes)
    left, right = (
        np.concatenate([tree[side] for tree in trees]) for side in ("left_children", "right_children")
    )
    feature = np.concatenate([tree["split_indices"] for tree in trees]).astype(np.int64)
    value = np.concatenate([tree["split_conditions"] for tree in trees]).astype(np.float32)
    split = left != -1
    left, right = left + offset, right + offset
    heap, depth = np.full(len(left), -1), np.full(len(left), -1)
    frontier = np.cumsum([0, *sizes[:-1]])  # the roots
    heap[frontier] = depth[frontier] = 0
    for level in range(MAX_DEPTH + 1):  # from the roots down: unreachable (deleted) nodes stay at -1
        inner = frontier[split[frontier]]
        if level == MAX_DEPTH and len(inner):
            raise ArtifactError(f"a refit has trees deeper than {MAX_DEPTH}, which the tables do not hold")
        heap[left[inner]], heap[right[inner]] = 2 * heap[inner] + 1, 2 * heap[inner] + 2
        depth[left[inner]] = depth[right[inner]] = level + 1
        frontier = np.concatenate([left[inner], right[inner]])
    node = split & (depth >= 0)
    leaves = np.zeros((len(trees), _LEAVES))
    for level in range(MAX_DEPTH + 1):  # a leaf above the last level fills the leaves below it
        at = ~split & (depth == level)
        span = 2 ** (MAX_DEPTH - level)
        first = (heap[at] + 1) * span - 1 - _NODES
        for k in range(span):
            leaves[tree_of[at], first + k] = value[at]
    return _Layout(
        keys=(feature[node] << 32) | value[node].view(np.uint32).astype(np.int64),
        slots=tree_of[node] * _NODES + heap[node],
        leaves=leaves,
        base=math.log(p / (1 - p)),
    )


@dataclass(frozen=True)
class BoostedEnsemble:
    """``B`` Platt-calibrated boosted refits: ``logit_b = slope_b * margin_b + intercept_b``."""

    boosters: tuple[bytes, ...]  # each refit's booster as XGBoost UBJSON (what the artifact holds)
    slopes: np.ndarray  # (B,)
    intercepts: np.ndarray  # (B,)
    trees: StackedTrees

    @classmethod
    def of(cls, fits: Sequence[tuple[xgb.Booster, PlattCalibrator]]) -> BoostedEnsemble:
        """The ensemble of refitted boosters and their calibrations."""
        boosters = [booster for booster, _ in fits]
        return cls(
            boosters=tuple(bytes(b.save_raw(raw_format="ubj")) for b in boosters),
            slopes=np.array([c.slope for _, c in fits], dtype=float),
            intercepts=np.array([c.intercept for _, c in fits], dtype=float),
            trees=StackedTrees.compile(boosters),
        )

    @property
    def size(self) -> int:
        """The number of refits ``B``."""
        return len(self.intercepts)

    def logits(self, X: np.ndarray) -> np.ndarray:
        """(rows, B) calibrated log-odds of encoded rows under every refit."""
        return self.trees.margins(X) * self.slopes + self.intercepts

    def logit_sd(self, X: np.ndarray) -> np.ndarray:
        """(rows,) standard deviation (``ddof=1``) of each encoded row's calibrated log-odds, over refits."""
        return self.logits(X).std(axis=1, ddof=1)

    def logit_mean(self, X: np.ndarray) -> np.ndarray:
        """(rows,) mean of each encoded row's calibrated log-odds over the refits."""
        return self.logits(X).mean(axis=1)

    def rms_deviation(self, X: np.ndarray, logit: np.ndarray) -> np.ndarray:
        """(rows,) ``sqrt(logit_sd² + (logit_mean - logit)²)`` from one pass over the trees."""
        logits = self.logits(X)
        return np.hypot(logits.std(axis=1, ddof=1), logits.mean(axis=1) - logit)

    def recalibrated(self, intercept: float | np.ndarray, slope: float | np.ndarray) -> BoostedEnsemble:
        """The ensemble whose every refit's calibrated logit ``l`` becomes ``intercept + slope * l`` (one pair
        for all refits, or arrays of ``B``, one per refit)."""
        return replace(self, slopes=slope * self.slopes, intercepts=intercept + slope * self.intercepts)

    def save(self, directory: Path) -> list[str]:
        """Write ``ensemble.json`` and one UBJSON booster per refit under ``ensemble/``; return the names."""
        (directory / FOLDER).mkdir(exist_ok=True)
        names = [f"{FOLDER}/refit_{b:03d}.ubj" for b in range(self.size)]
        for name, raw in zip(names, self.boosters, strict=True):
            (directory / name).write_bytes(raw)
        state = {
            "family": "xgboost",
            "feature_names": list(FEATURE_NAMES),
            "boosters": names,
            "calibrators": [
                PlattCalibrator(slope=float(s), intercept=float(i)).to_dict()
                for s, i in zip(self.slopes, self.intercepts, strict=True)
            ],
        }
        (directory / FILE).write_text(json.dumps(state))
        return [FILE, *names]

    @classmethod
    def load(cls, directory: Path) -> BoostedEnsemble:
        """Rebuild from ``ensemble.json`` and its boosters; :class:`ArtifactError` if they do not fit the
        features (digests are checked by ``RiskModel.load``)."""
        state = json.loads((directory / FILE).read_text())
        if state.get("family") != "xgboost" or state.get("feature_names") != list(FEATURE_NAMES):
            raise ArtifactError(f"{FILE} does not hold boosted refits on this version's features")
        names, calibrators = state["boosters"], state["calibrators"]
        if not names or len(names) != len(calibrators):
            raise ArtifactError(f"{FILE} lists {len(names)} boosters for {len(calibrators)} calibrations")
        raws, boosters = [], []
        for name in names:
            raw = (directory / name).read_bytes()
            booster = xgb.Booster(params={"nthread": 1})
            try:
                booster.load_model(bytearray(raw))
            except xgb.core.XGBoostError as err:
                raise ArtifactError(f"{name} is not an XGBoost model: {err}") from err
            if booster.feature_names != list(FEATURE_NAMES):
                raise ArtifactError(f"{name} was trained on other features than this version of lenrisk's")
            raws.append(raw)
            boosters.append(booster)
        fits = [PlattCalibrator.from_dict(c) for c in calibrators]
        return cls(
            boosters=tuple(raws),
            slopes=np.array([c.slope for c in fits]),
            intercepts=np.array([c.intercept for c in fits]),
            trees=StackedTrees.compile(boosters),
        )
