"""The adversarial test sets: the C&W set made by our C&W (``impl="ours"``) agrees with
Foolbox's at equal settings (the cross-check that lets ``a2d evaluate --cw-impl ours`` stand in
for it), every kept example is misclassified, and an unknown implementation is refused."""

import pytest
import torch

from adaptive.core.data import load_dataset
from adaptive.core.errors import ToolkitError
from adaptive.core.zoo import load_model
from adaptive.evaluations.adversarial_sets import attack_settings, make_adversarial


def test_our_cw_set_matches_foolboxs_at_equal_settings():
    model, _ = load_model("mnist-cnn")
    d = load_dataset("mnist-bundled")
    x, y = d.x()[:10], d.labels[:10]
    settings = {**attack_settings("cw", "mnist"), "steps": 100, "binary_search_steps": 4,
                "stepsize": 0.05, "initial_const": 0.1}
    theirs = make_adversarial("cw", model, x, y, settings)
    ours = make_adversarial("cw", model, x, y, {**settings, "impl": "ours"})
    assert torch.equal(ours.source, theirs.source) and len(ours.source) >= 8
    l2 = {k: (s.x - x[s.source]).flatten(1).norm(dim=1) for k, s in
          (("ours", ours), ("theirs", theirs))}
    assert abs(float(l2["ours"].mean()) / float(l2["theirs"].mean()) - 1) < 0.02
    with torch.no_grad():
        assert bool((model(ours.x).argmax(1) != y[ours.source]).all())
    with pytest.raises(ToolkitError, match="C&W implementation"):
        make_adversarial("cw", model, x, y, {**settings, "impl": "cleverhans"})
