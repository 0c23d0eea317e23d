"""The base class of every meta-learner: the sklearn and skorch plumbing.

An algorithm module (``metric/_protonet.py``, ``optimization/_maml.py``)
subclasses :class:`MetaLearner` and writes only its mathematics:

- ``_n_outputs()``: the width the backbone must end on (None: its own);
- ``_episode_loss(batch, training)``: the meta-objective on an
  :class:`~skmeta.tasks.EpisodeBatch`, with the query predictions;
- ``_adapt(X_support, y_support, n_classes, weight)``: the adapted state of
  one task, and a report of the adaptation (or None);
- ``_predict_state(state, X)``: logits or values for query rows.

Everything else lives here, one concern a module, each a mixin of
:class:`MetaLearner` that can be read alone:

- ``_parameters.py``: parameter names, constraints, routing, refusals;
- ``_devices.py``: devices, atomic parameter files, portable pickles;
- ``_tasks.py``: validating tasks, the fitted state they set;
- ``_training.py``: skorch's training loop fed with episodes;
- ``_adaptation.py``: adapt, predict and the episodic score;
- ``_prior.py``: ``prior=``, a pooled sklearn model the learner corrects;
- ``_learner.py``: the constructor, backbone and loss, and the assembly.
"""

from ._adaptation import Adaptation, MetaClassifierMixin
from ._learner import MetaLearner

__all__ = ["Adaptation", "MetaClassifierMixin", "MetaLearner"]
