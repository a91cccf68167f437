"""The example plugin, found the way users find it: through entry-point discovery, not import."""
import numpy as np
import pytest

import explainkit
from explainkit.registry import registry
from explainkit.testing import check_explainer


def test_discovered_through_entry_points():
    entry = registry(refresh=True).get("feature_ablation")
    assert entry.ok and entry.distribution == "explainkit-example"
    assert entry.spec.impl == "explainkit_example.ablation:FeatureAblation"


def test_conformance_harness_passes():
    report = check_explainer("feature_ablation", quick=True)
    report.raise_on_failure()
    checked = {r.model for r in report.rows if r.check == "output"}
    assert len(checked) == 3                     # one model per modality


def test_scores_are_exact_drops_on_a_black_box():
    """On a linear black box the drop from ablating feature i (to 0) is exactly w_i * x_i."""
    w = np.array([2.0, -1.0, 0.5])
    model = explainkit.wrap(lambda rows: np.asarray(rows) @ w, modality="tabular", task="regression",
                            feature_names=["a", "b", "c"])
    exp = explainkit.explain(model, np.array([1.0, 3.0, -2.0]), method="feature_ablation")
    np.testing.assert_allclose(exp.scores, [2.0, -3.0, -1.0])
    assert exp.base_value == pytest.approx(-2.0)
