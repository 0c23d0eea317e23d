"""Meta-SGD: meta-learn the initialisation and a learning rate for every weight.

Functional core: :class:`MetaSGDModule` holds the backbone (``network``) and
its per-parameter learning rates (``rates``, a tensor the shape of each
weight, so both a step size and a direction); :func:`metasgd_loss` is
MAML's meta-objective (:func:`~skmeta.optimization._maml.maml_loss`) with
these rates as the inner step sizes, so the meta-gradient reaches both.
Estimators: :class:`MetaSGDClassifier`, :class:`MetaSGDRegressor`.
"""

import torch
from sklearn.exceptions import NotFittedError

from .._base._docs import fitted_attributes
from .._mlp import MLP
from ._base import (
    STANDARDIZE_TARGETS_CONSTRAINT,
    InnerLoopClassifier,
    InnerLoopRegressor,
    parameters_doc,
)
from ._maml import _MAML, _REGRESSOR_LR_NOTE, maml_loss


def rate_key(name):
    """The key of parameter ``name``'s rate (``torch.nn.ParameterDict`` keys take no '.')."""
    return name.replace(".", "-")


class MetaSGDModule(torch.nn.Module):
    """A backbone and one learned inner learning rate per weight.

    Parameters
    ----------
    network : torch.nn.Module
        The backbone.
    inner_lr : float
        The value every rate starts at.

    Examples
    --------
    >>> import torch
    >>> module = MetaSGDModule(torch.nn.Linear(2, 1), inner_lr=0.1)
    >>> sorted(module.rates), module.rates["weight"]
    (['bias', 'weight'], Parameter containing:
    tensor([[0.1000, 0.1000]], requires_grad=True))
    """

    def __init__(self, network, inner_lr):
        super().__init__()
        self.network = network
        self.rates = torch.nn.ParameterDict({
            rate_key(name): torch.nn.Parameter(torch.full_like(p, inner_lr).detach())
            for name, p in network.named_parameters()
        })

    def forward(self, X):
        return self.network(X)

    def rates_by_name(self):
        """The rates, keyed by the network's parameter names."""
        return {name: self.rates[rate_key(name)] for name, _ in self.network.named_parameters()}


def metasgd_loss(module, batch, *, loss_fn, steps, first_order=False):
    """Mean query loss over a meta-batch after Meta-SGD inner steps.

    Each inner step subtracts ``rate * gradient`` from every weight, the rate
    a tensor of the weight's shape; the meta-gradient flows into the
    initial weights and into the rates.

    Parameters
    ----------
    module : MetaSGDModule
    batch : EpisodeBatch
    loss_fn, steps, first_order
        As in :func:`~skmeta.optimization._maml.inner_loop`. With
        ``first_order``, the inner gradients are constants; the rates still
        get a meta-gradient, through the update they scale.

    Returns
    -------
    loss : Tensor
        Scalar: the mean over episodes of the query loss.
    outputs : Tensor of shape (n_episodes, n_queries, n_outputs)

    Examples
    --------
    >>> import torch
    >>> from torch.nn.functional import mse_loss
    >>> from skmeta.tasks import EpisodeBatch
    >>> module = MetaSGDModule(torch.nn.Linear(1, 1), inner_lr=0.1)
    >>> batch = EpisodeBatch(torch.ones(2, 3, 1), torch.ones(2, 3, 1),
    ...                      torch.ones(2, 4, 1), torch.ones(2, 4, 1))
    >>> loss, outputs = metasgd_loss(module, batch, loss_fn=mse_loss, steps=1)
    >>> loss.backward(); module.rates["weight"].grad.shape
    torch.Size([1, 1])
    """
    return maml_loss(module.network, dict(module.network.named_parameters()), batch, loss_fn=loss_fn,
                     inner_lr=module.rates_by_name(), steps=steps, first_order=first_order)


class _MetaSGD(_MAML):
    """What MetaSGDClassifier and MetaSGDRegressor share: the rates beside the backbone."""

    def _initialize_module(self, reason=None):
        # The prior (if any) zeroes and wraps the network first; the rates then
        # follow the network's own parameter names.
        super()._initialize_module(reason=reason)
        device = next(iter(self.module_.parameters()), torch.empty(0)).device
        self.module_ = MetaSGDModule(self.module_, self.inner_lr).to(device)
        return self

    def _backbone(self):
        return self.module_.network

    def _rates(self):
        return self.module_.rates_by_name()

    def _direction(self):
        rates = self._rates()

        def direction(params, grads, loss):
            return {name: rates[name].detach() * grads[name] for name in grads}

        return direction

    def _episode_loss(self, batch, training):
        loss, outputs = metasgd_loss(
            self.module_, batch, loss_fn=self._loss, steps=self._steps(training),
            first_order=self.first_order or not training,
        )
        return loss, self._outputs(outputs)

    @property
    def inner_lrs_(self):
        """The meta-learned inner learning rates, by parameter name (numpy arrays)."""
        if not isinstance(self.__dict__.get("module_"), MetaSGDModule):
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet; call fit first.")
        return {name: rate.detach().cpu().numpy().copy() for name, rate in self._rates().items()}


_OWN = """    inner_lr : float, default={inner_lr}
        The value every learned inner learning rate starts at. The rates
        (one per weight) are then meta-learned with the weights; adaptation
        takes steps of ``rates * gradient``, halving the step when one
        raises the support loss;
{lr_note}    inner_steps : int, default=1
        Inner steps per episode in meta-training. The meta-gradient goes
        back through every one, so meta-training time and memory grow with
        it.
    adapt_steps : int or None, default=10
        Steps when adapting to a new task (``adapt``, ``predict``, ``score``)
        and in meta-validation; None uses ``inner_steps``. Set it to 0 for
        the meta-learned initialisation's own predictions. Meta-SGD [1]_
        learns its rates for ``inner_steps`` steps: more steps at adaptation
        can overshoot, which the halving guard then catches.
    first_order : bool, default=False
        Treat the inner gradients as constants, so the meta-gradient has no
        second derivatives. The rates are still meta-learned, through the
        update they scale.
"""

_OWN_ATTRIBUTES = """    module_ : MetaSGDModule
        The meta-learned backbone (``module_.network``) and its inner
        learning rates (``module_.rates``, one tensor per weight).
    inner_lrs_ : dict of str to ndarray
        The meta-learned inner learning rates, keyed by the backbone's
        parameter names, each of that parameter's shape.
"""

_REFERENCE = """
    References
    ----------
    .. [1] Li, Zhou, Chen and Li, "Meta-SGD: Learning to Learn Quickly for
       Few-Shot Learning", arXiv:1707.09835, 2017.
"""


class MetaSGDClassifier(InnerLoopClassifier, _MetaSGD):
    __doc__ = """Meta-SGD for few-shot classification.

    As MAML, meta-training learns initial weights of the whole backbone, and
    also a learning rate for every single weight (a tensor the shape of
    each parameter, so a step size and a direction): adaptation subtracts
    ``rates * gradient`` from the weights at each step. The rates start at
    ``inner_lr`` and are meta-learned by the same meta-optimizer.
    """ + parameters_doc(
        _OWN.format(inner_lr="0.1", lr_note="        0.1 suits standardised features.\n"),
        classification=True, lr="1e-3", max_epochs="20",
    ) + fitted_attributes(classification=True, own=_OWN_ATTRIBUTES) + """
    See Also
    --------
    MetaSGDRegressor : The same for regression.
    MAMLClassifier : One shared inner learning rate.
    ANILClassifier : Adapts the output layer only.
""" + _REFERENCE + """
    Examples
    --------
    >>> from skmeta import MetaSGDClassifier
    >>> from skmeta.datasets import make_blob_tasks
    >>> tasks = make_blob_tasks(n_tasks=20, random_state=0)
    >>> meta = MetaSGDClassifier(lr=3e-3, max_epochs=2, n_episodes=40, module__hidden_sizes=(32,),
    ...                          random_state=0).fit(tasks[:15])
    >>> meta.inner_lrs_["layers.0.weight"].shape  # a rate per weight of the first layer
    (32, 20)
    >>> meta.score(tasks[15:]) > 0.6
    True
    """


class MetaSGDRegressor(InnerLoopRegressor, _MetaSGD):
    _parameter_constraints = {**_MAML._parameter_constraints, **STANDARDIZE_TARGETS_CONSTRAINT}

    def __init__(self, module=MLP, *, inner_lr=0.05, lr=0.01, max_epochs=60, standardize_targets=True,
                 **kwargs):
        self.standardize_targets = standardize_targets
        super().__init__(module, inner_lr=inner_lr, lr=lr, max_epochs=max_epochs, **kwargs)

    __doc__ = """Meta-SGD for few-shot regression.

    As MAML, meta-training learns initial weights such that a few steps on a
    new task's support set fit that task, and also a learning rate for
    every single weight (a tensor the shape of each parameter): each step
    subtracts ``rates * gradient``. The rates start at ``inner_lr``.
    """ + parameters_doc(
        _OWN.format(inner_lr="0.05", lr_note=_REGRESSOR_LR_NOTE),
        classification=False, lr="0.01", max_epochs="60",
    ) + fitted_attributes(classification=False, own=_OWN_ATTRIBUTES) + """
    See Also
    --------
    MetaSGDClassifier : The same for classification.
    MAMLRegressor : One shared inner learning rate.
""" + _REFERENCE + """
    Examples
    --------
    >>> from skmeta import MetaSGDRegressor
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> tasks = make_sinusoid_tasks(n_tasks=50, random_state=0)
    >>> meta = MetaSGDRegressor(n_shots=10, n_queries=10, max_epochs=1, n_episodes=40,
    ...                         module__hidden_sizes=(32,), random_state=0).fit(tasks)
    >>> meta.adapt(tasks[0].X[:10], tasks[0].y[:10]).predict(tasks[0].X[10:12]).shape
    (2,)
    >>> sorted(meta.inner_lrs_)[:2]
    ['layers.0.bias', 'layers.0.weight']
    """
