"""Parameters: names, validation, routing, and what a meta-learner refuses.

:class:`ParametersMixin` makes skorch's parameter plumbing sklearn's: the
parameter names are those of the ``__init__`` signatures (plus routed
``module__*``-style ones), they are checked against
``_parameter_constraints``, and the parameters that episodes make
meaningless (``batch_size``, ``iterator_*__*``, ``dataset__*``) are refused.
"""

import functools
import inspect

from sklearn.utils._param_validation import validate_parameter_constraints
from sklearn.utils._tags import ClassifierTags, RegressorTags
from skorch import NeuralNet
from skorch.callbacks import EpochTimer, PassthroughScoring, PrintLog

#: Routed parameters skorch would accept but episodes make meaningless.
_REFUSED_PREFIXES = ("iterator_train", "iterator_valid", "dataset")


#: Parameters of classification alone, with their defaults: a regressor
#: does not list them, and refuses them when set.
CLASSIFICATION_ONLY = {"n_ways": None, "class_balance": "balanced"}


class ParametersMixin:
    """sklearn's parameter contract on top of skorch's ``NeuralNet``."""

    def _get_param_names(self):
        # The signature's parameters plus routed ones (module__*, optimizer__*,
        # ...); skorch's own would list every attribute without a trailing _.
        # A subclass may add its own parameters and pass the rest on as
        # **kwargs: the names are those of every __init__ down to this one.
        names = _signature_parameter_names(type(self))
        routed = {k for k in vars(self) if "__" in k and not k.startswith("_") and not k.endswith("_")}
        if not self._classification:
            names = names - set(CLASSIFICATION_ONLY)
        if not self._replays:
            names = names - {"replay_size"}
        return sorted(names | routed)

    def get_params(self, deep=True, **kwargs):
        params = super().get_params(deep=deep, **kwargs)
        if deep:
            # skorch's ProgressBar reads "batch_size"; a meta-batch is our batch.
            params.setdefault("batch_size", self.meta_batch_size)
        return params

    def set_params(self, **params):
        """Set parameters, routed ones (``module__*``, ``optimizer__*``) included.

        Parameters
        ----------
        **params : dict
            Estimator parameters.

        Returns
        -------
        self : object

        Examples
        --------
        >>> from skmeta import ProtoNetClassifier
        >>> from skmeta.datasets import make_blob_tasks
        >>> meta = ProtoNetClassifier(max_epochs=1, n_episodes=8, random_state=0)
        >>> meta = meta.fit(make_blob_tasks(n_tasks=6, random_state=0))
        >>> meta = meta.set_params(optimizer__weight_decay=0.01)
        >>> meta.get_params()["optimizer__weight_decay"], meta.optimizer_.param_groups[0]["weight_decay"]
        (0.01, 0.01)
        """
        if "batch_size" in params and params["batch_size"] != self.meta_batch_size:
            raise ValueError(
                f"batch_size={params['batch_size']!r} is not a parameter of "
                f"{type(self).__name__}: a meta-batch of episodes is its batch; set "
                "meta_batch_size instead."
            )
        params = {key: value for key, value in params.items() if key != "batch_size"}
        for key, value in params.items():
            if key.startswith("optimizer__") and not key.startswith("optimizer__param_groups__"):
                # On a built optimizer skorch only changes the live one; keep
                # the value as a parameter too, for get_params, clone and the
                # optimizer the next fit builds.
                setattr(self, key, value)
                self._params_to_validate.add(key)
        return super().set_params(**params)

    def _validate_params(self):
        params = self.get_params(deep=False)
        skorch_defaults = _skorch_defaults()
        refused = sorted(
            name for name, value in vars(self).items()
            if (name.split("__")[0] in _REFUSED_PREFIXES and "__" in name)
            or (name in (*_REFUSED_PREFIXES, "batch_size") and value is not skorch_defaults[name].default
                and value != skorch_defaults[name].default)
        )
        if refused:
            raise ValueError(
                f"{type(self).__name__} does not take {refused[0]}: episodes are drawn by "
                "skmeta.tasks.EpisodeLoader, not by a torch DataLoader. Set n_episodes "
                "(episodes per epoch) and meta_batch_size (episodes per step) instead."
            )
        if not self._classification:
            given = [name for name, default in CLASSIFICATION_ONLY.items()
                     if vars(self).get(name, default) != default]
            if given:
                raise ValueError(
                    f"{type(self).__name__} is a regressor: {given[0]}={vars(self)[given[0]]!r} "
                    "has no meaning for it (regression tasks have no classes to count or "
                    "balance). Leave it out."
                )
        if not self._replays and vars(self).get("replay_size", 100) != 100:
            raise ValueError(
                f"{type(self).__name__} keeps one head per training task, by position: "
                f"replay_size={self.replay_size!r} would add past tasks to the ones given and "
                "mix up the heads. Leave it out; continued training takes the same tasks in "
                "the same order."
            )
        validate_parameter_constraints(
            self._parameter_constraints,
            {name: value for name, value in params.items() if "__" not in name},
            caller_name=type(self).__name__,
        )
        if hasattr(self, "module_"):
            # skorch checks that routed names (module__*, ...) have a known
            # prefix; it learns "module", "optimizer", ... only as they are
            # built, and initialize() runs this check again once they are.
            super()._validate_params()

    @property
    def _default_callbacks(self):
        return [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
            ("valid_loss", PassthroughScoring(name="valid_loss")),
            ("valid_score", PassthroughScoring(name="valid_score", lower_is_better=False)),
            ("print_log", PrintLog()),
        ]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        if self._classification:
            tags.estimator_type = "classifier"
            tags.classifier_tags = ClassifierTags()
        else:
            tags.estimator_type = "regressor"
            tags.regressor_tags = RegressorTags()
        return tags


@functools.cache
def _signature_parameter_names(klass):
    """The parameters of every ``__init__`` from ``klass`` down to MetaLearner's (not skorch's)."""
    names = set()
    for base in klass.__mro__:
        if base is NeuralNet:
            break
        if "__init__" not in vars(base):
            continue
        names |= {
            p.name for p in inspect.signature(base.__init__).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        }
    return frozenset(names)


@functools.cache
def _skorch_defaults():
    return inspect.signature(NeuralNet.__init__).parameters


def _refuse_fit_params(estimator, method, fit_params):
    if fit_params:
        raise TypeError(
            f"{type(estimator).__name__}.{method} got unexpected argument(s) "
            f"{sorted(fit_params)}: meta-training weighs every episode alike. Support rows "
            "are weighted in adapt(..., sample_weight=...), query rows in score and the "
            "episodic scorers."
        )


def _refuse_plain_pipeline(meta_learner):
    """Raise if a plain sklearn Pipeline handed this learner untransformed support rows."""
    from ..pipeline import _refuse_plain_pipeline as refuse

    refuse(meta_learner)


def _refuse_plain_scorer(meta_learner):
    """Raise if sklearn's model selection will score this learner with a plain scorer."""
    from ..metrics import _refuse_plain_scorer as refuse

    refuse(meta_learner)
