"""Global SHAP summaries of a trained model: mean |SHAP| per feature and a beeswarm plot.

Values are on the calibrated log-odds scale (``features.model.riskmodel.Explanation``). The plot is drawn by
the ``shap`` library itself (Lundberg & Lee, NeurIPS 2017) from those values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import shap
from matplotlib.figure import Figure

from features.encoding import FEATURE_GROUPS, FEATURE_NAMES
from features.model.riskmodel import Explanation


def importance_table(explanation: Explanation) -> pd.DataFrame:
    """Mean |SHAP| (calibrated log-odds) per encoded feature, largest first, with its contract field."""
    table = pd.DataFrame(
        {
            "feature": FEATURE_NAMES,
            "field": [FEATURE_GROUPS[f] for f in FEATURE_NAMES],
            "mean_abs_shap": np.abs(explanation.values).mean(axis=0),
        }
    )
    return table.sort_values("mean_abs_shap", ascending=False, ignore_index=True)


def beeswarm_figure(explanation: Explanation, X: np.ndarray, title: str, *, max_display: int = 15) -> Figure:
    """SHAP beeswarm plot of ``explanation`` for the encoded rows ``X`` (pyplot figure, closed by caller)."""
    import matplotlib

    matplotlib.use("Agg")  # headless; never open a window
    import matplotlib.pyplot as plt

    values = shap.Explanation(
        values=explanation.values,
        base_values=np.full(len(X), explanation.base),
        data=X,
        feature_names=list(FEATURE_NAMES),
    )
    shap.plots.beeswarm(values, max_display=max_display, show=False)
    figure = plt.gcf()
    figure.suptitle(f"{title}\nSHAP values on the calibrated log-odds scale", fontsize=10)
    figure.set_size_inches(10, 7)
    figure.tight_layout()
    plt.close(figure)
    return figure
