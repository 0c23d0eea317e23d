"""Tests of skmeta/_mlp.py: the default backbone."""

import numpy as np
import pytest
import torch
from torch import nn

from skmeta import MLP, MAMLClassifier, ProtoNetClassifier


def _kinds(module):
    return [type(layer) for layer in module.layers]


def test_linear_relu_blocks_then_a_head():
    module = MLP(3, 2, hidden_sizes=(8, 5))
    assert _kinds(module) == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    linears = [layer for layer in module.layers if isinstance(layer, nn.Linear)]
    widths = [(layer.in_features, layer.out_features) for layer in linears]
    assert widths == [(3, 8), (8, 5), (5, 2)]
    assert module(torch.zeros(4, 3)).shape == (4, 2)


def test_forward_is_linear_relu_blocks_computed_by_hand():
    torch.manual_seed(0)
    module = MLP(3, 2, hidden_sizes=(8, 5)).double()
    X = np.random.default_rng(0).normal(size=(6, 3))
    (W1, b1), (W2, b2), (W3, b3) = (
        (layer.weight.detach().numpy(), layer.bias.detach().numpy())
        for layer in module.layers if isinstance(layer, nn.Linear)
    )
    hidden = np.maximum(np.maximum(X @ W1.T + b1, 0) @ W2.T + b2, 0)
    expected = hidden @ W3.T + b3
    np.testing.assert_allclose(module(torch.tensor(X)).detach().numpy(), expected, rtol=1e-12)
    embedding = MLP(3, hidden_sizes=(8, 5)).double()
    embedding.load_state_dict({k: v for k, v in module.state_dict().items() if not k.startswith("layers.4")})
    np.testing.assert_allclose(embedding(torch.tensor(X)).detach().numpy(), hidden, rtol=1e-12)


def test_without_n_outputs_the_last_hidden_layer_is_the_embedding():
    module = MLP(3, hidden_sizes=(8, 5))
    assert _kinds(module)[-1] is nn.ReLU
    embedding = module(torch.randn(6, 3))
    assert embedding.shape == (6, 5) and (embedding >= 0).all()


def test_no_hidden_layer_is_a_linear_model_or_the_identity():
    linear = MLP(3, 2, hidden_sizes=())
    assert _kinds(linear) == [nn.Linear]
    X = torch.randn(4, 3)
    assert torch.equal(MLP(3, hidden_sizes=())(X), X)


def test_dropout_follows_each_hidden_layer_and_acts_only_in_training():
    module = MLP(3, 1, hidden_sizes=(200, 200), dropout=0.5)
    assert _kinds(module).count(nn.Dropout) == 2
    X = torch.ones(2, 3)
    torch.manual_seed(0)
    assert not torch.equal(module(X), module(X))
    module.eval()
    assert torch.equal(module(X), module(X))
    # In training, dropout zeroes about half the hidden units and scales the rest by 2.
    module = MLP(3, hidden_sizes=(2000,), dropout=0.5)
    kept = module(X)
    module.eval()
    full = module(X)
    active = full > 0
    zeroed = (kept[active] == 0).float().mean().item()
    assert 0.45 < zeroed < 0.55
    torch.testing.assert_close(kept[active & (kept > 0)], 2 * full[active & (kept > 0)])


@pytest.mark.parametrize("Estimator, n_outputs", [(ProtoNetClassifier, None), (MAMLClassifier, 2)])
def test_meta_learners_size_it_from_the_data(Estimator, n_outputs, fast_params, blob_tasks):
    meta = Estimator(**{**fast_params, "module__hidden_sizes": (7, 6)}).fit(blob_tasks)
    linears = [layer for layer in meta.module_.layers if isinstance(layer, nn.Linear)]
    assert linears[0].in_features == blob_tasks[0].X.shape[1]
    assert linears[-1].out_features == (6 if n_outputs is None else n_outputs)
