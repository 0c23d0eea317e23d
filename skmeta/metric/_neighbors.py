"""k nearest neighbours in a meta-learned embedding.

The embedding is meta-trained as prototypical networks train theirs (query
rows near their class mean, far from the others), or by another metric
meta-learner (``embedding=MatchingNetClassifier()``) whose embedding the
neighbours are then taken in; a new task is adapted to by embedding its
support set, and a query row's class probabilities are the (weighted) vote
of its ``n_neighbors`` nearest support rows there. Where a class is made of
several clusters, neighbours follow them and a class mean does not.

Functional core: :func:`neighbor_votes`. Estimator:
:class:`EmbeddingKNNClassifier`.
"""

import contextlib
import inspect
import warnings
from numbers import Integral

import numpy as np
import torch
from sklearn.base import clone
from sklearn.utils._param_validation import Interval, StrOptions

from .._base import MetaClassifierMixin, MetaLearner
from .._base._docs import episodic_parameters
from .._base._parameters import _refuse_fit_params, _refuse_plain_scorer
from .._mlp import MLP
from ..exceptions import AdaptationWarning
from ..utils._stacklevel import external_stacklevel
from ._embedding import EmbeddingMixin
from ._protonet import prototypical_loss

#: Floor of a vote share, before its logarithm is taken.
_PROBABILITY_FLOOR = 1e-12

#: The parameters of meta-training that a learner given as ``embedding`` owns:
#: set on the kNN classifier they would have no effect, so they are refused.
_TRAINING_PARAMETERS = ("module", "criterion", "optimizer", "lr", "max_epochs", "n_episodes",
                       "meta_batch_size", "train_split", "callbacks", "replay_size", "ewc",
                       "warm_start", "device", "verbose")


def neighbor_votes(queries, support, labels, n_classes, *, n_neighbors, weights="uniform",
                   support_weight=None):
    """Class shares of each query row's nearest support rows (Euclidean).

    Parameters
    ----------
    queries : Tensor of shape (n_queries, width)
    support : Tensor of shape (n_support, width)
    labels : LongTensor of shape (n_support,)
        Labels in ``0 .. n_classes - 1``.
    n_classes : int
    n_neighbors : int
        Neighbours that vote; at most the support rows of positive weight.
    weights : {"uniform", "distance"}, default="uniform"
        "distance" weighs a neighbour's vote by its inverse distance (a
        neighbour at distance 0 takes the whole vote, shared among such).
    support_weight : Tensor of shape (n_support,) or None, default=None
        Multiplies each support row's vote; rows of weight 0 never vote.

    Returns
    -------
    Tensor of shape (n_queries, n_classes)
        Vote shares, each row summing to one.

    Examples
    --------
    >>> import torch
    >>> support = torch.tensor([[0.0], [1.0], [5.0]])
    >>> neighbor_votes(torch.tensor([[0.4]]), support, torch.tensor([0, 1, 1]), 2, n_neighbors=2)
    tensor([[0.5000, 0.5000]])
    >>> neighbor_votes(torch.tensor([[4.0]]), support, torch.tensor([0, 1, 1]), 2, n_neighbors=1)
    tensor([[0., 1.]])
    """
    distances = torch.cdist(queries, support)
    if support_weight is None:
        support_weight = torch.ones(support.shape[0], dtype=queries.dtype, device=queries.device)
    support_weight = support_weight.to(queries.dtype)
    n_voters = int((support_weight > 0).sum())
    distances = distances.masked_fill(support_weight <= 0, torch.inf)
    nearest, index = distances.topk(min(n_neighbors, n_voters), dim=-1, largest=False)
    votes = support_weight[index]
    if weights == "distance":
        exact = nearest == 0
        votes = torch.where(exact.any(-1, keepdim=True), votes * exact, votes / nearest.clamp_min(1e-30))
    one_hot = torch.nn.functional.one_hot(labels[index], n_classes).to(queries.dtype)
    shares = (votes.unsqueeze(-1) * one_hot).sum(-2)
    return shares / shares.sum(-1, keepdim=True)


def _same(value, default):
    """Whether a parameter's value is its default (equal, or of the same repr, as clone copies)."""
    if value is default:
        return True
    try:
        if bool(value == default):
            return True
    except (TypeError, ValueError, RuntimeError):
        pass
    return type(value) is type(default) and repr(value) == repr(default)


def _check_embedding(embedding):
    """Raise a ValueError unless ``embedding`` is None or a metric meta-learner that classifies.

    Parameters
    ----------
    embedding : object
        What ``EmbeddingKNNClassifier(embedding=...)`` was given.

    Returns
    -------
    embedding : object
        ``embedding``, when it is acceptable.

    Examples
    --------
    >>> from skmeta import MatchingNetClassifier, MatchingNetRegressor
    >>> _check_embedding(None) is None, _check_embedding(MatchingNetClassifier()) is not None
    (True, True)
    >>> _check_embedding(MatchingNetRegressor())
    Traceback (most recent call last):
    ...
    ValueError: embedding=MatchingNetRegressor(...) is a regressor: ...
    """
    from ._embedding import EmbeddingMixin

    if embedding is None:
        return None
    cls = embedding if isinstance(embedding, type) else type(embedding)
    fix = ("Pass an instance of a metric meta-learner that classifies, such as "
           "embedding=MatchingNetClassifier() or ProtoNetClassifier(), or embedding=None for "
           "the prototypical loss.")
    if not (issubclass(cls, MetaLearner) and issubclass(cls, EmbeddingMixin)):
        shown = f"{cls.__name__}(...)" if isinstance(embedding, MetaLearner) else repr(embedding)
        raise ValueError(
            f"embedding={shown} is not a metric meta-learner: the neighbours are taken "
            f"in the embedding (transform) that such a learner meta-trains. {fix}"
        )
    name = cls.__name__
    if not cls._classification:
        raise ValueError(
            f"embedding={name}(...) is a regressor: its embedding is meta-trained to regress "
            "targets, and the neighbours vote on class labels. Pass the classifier of the same "
            f"family, such as {name.replace('Regressor', 'Classifier')}(), with the same settings."
        )
    if isinstance(embedding, type):
        raise ValueError(
            f"embedding={name} is a class; the learner is cloned and meta-trained as sklearn's "
            f"meta-estimators do with theirs, so it must be an instance: embedding={name}()."
        )
    return embedding


class EmbeddingKNNClassifier(EmbeddingMixin, MetaClassifierMixin, MetaLearner):
    __doc__ = """k nearest neighbours in a meta-learned embedding, for few-shot classification.

    Meta-training learns an embedding as :class:`ProtoNetClassifier` does
    (episodes whose query rows must lie near their class's mean), or as the
    metric meta-learner given as ``embedding`` does; adapting to a new task
    embeds its support set, and a query row's class probabilities are the
    vote of its ``n_neighbors`` nearest support rows in the embedding, as
    :class:`sklearn.neighbors.KNeighborsClassifier` votes on raw features.
    Adapting takes no gradient step.

    Parameters
    ----------
    module : torch.nn.Module class or instance, default=MLP
        The embedding. A class is built in ``fit`` with its ``module__*``
        parameters, and with ``n_features`` if it accepts it.
    embedding : metric meta-learner (a classifier) or None, default=None
        What meta-trains the embedding. None: this learner, on the
        prototypical loss. A classifier with a ``transform``, such as
        ``MatchingNetClassifier(kernel="learned")`` or
        ``ProtoNetClassifier()``: ``fit`` meta-trains a clone of it (of a
        fitted one too, as sklearn's meta-estimators do), kept as
        ``embedding_``, and the neighbours are taken in its ``transform``
        (a matching network's embedding, before its context layers and
        kernel). Its own parameters then govern meta-training: set them on
        it, or here as ``embedding__<name>``. This learner's ``module``,
        ``criterion``, ``optimizer``, ``lr``, ``max_epochs``,
        ``n_episodes``, ``meta_batch_size``, ``train_split``,
        ``callbacks``, ``replay_size``, ``ewc``, ``warm_start``, ``device``,
        ``verbose`` and routed ``module__*``-style parameters would have no
        effect then: set otherwise than their defaults, they raise a
        ValueError. Its episode settings still draw the support sets of
        ``score``. Where the clone's ``random_state`` or ``task_column`` is
        None, it takes this learner's. ``partial_fit`` continues the
        clone's meta-training. A regressor, or a learner without
        ``transform``, raises a ValueError.
    n_neighbors : int, default=3
        Neighbours that vote, at most the support set's rows (a 1-shot
        2-way support set has 2: then both vote).
    weights : {"uniform", "distance"}, default="uniform"
        As in :class:`~sklearn.neighbors.KNeighborsClassifier`: every
        neighbour's vote counts alike, or by its inverse distance. Support
        ``sample_weight`` multiplies either.
""" + episodic_parameters(
        criterion="Loss of meta-training on the prototypical query logits; None is\\n"
                  "        ``torch.nn.CrossEntropyLoss``.",
        classification=True,
    ) + """
    Attributes
    ----------
    module_ : torch.nn.Module
        The meta-learned embedding; with ``embedding``, the one of
        ``embedding_`` (the same module, not a copy).
    embedding_ : meta-learner
        The clone of ``embedding`` that meta-trained the embedding; only
        when ``embedding`` is set.
    history_ : skorch.History
        Per epoch: ``train_loss``, ``valid_loss``, ``valid_score`` (query
        accuracy of the k-nearest-neighbour vote on meta-validation
        episodes), ``dur``. With ``embedding``, the history of
        ``embedding_`` (its ``valid_score`` is its own rule's accuracy).
    n_features_in_ : int
        Number of features.
    n_ways_ : int
        Classes per training episode.

    See Also
    --------
    ProtoNetClassifier : The same embedding, classified by class means.
    MatchingNetClassifier : An embedding meta-trained by attention over the support set.
    sklearn.neighbors.KNeighborsClassifier : The same vote on raw features.

    Examples
    --------
    >>> from skmeta import EmbeddingKNNClassifier, MatchingNetClassifier
    >>> from skmeta.datasets import make_blob_tasks
    >>> tasks = make_blob_tasks(n_tasks=20, random_state=0)
    >>> meta = EmbeddingKNNClassifier(n_neighbors=3, max_epochs=2, random_state=0).fit(tasks[:15])
    >>> adapted = meta.adapt(tasks[15].X[:10], tasks[15].y[:10])
    >>> adapted.predict_proba(tasks[15].X[10:12]).shape
    (2, 2)

    The neighbours in the embedding of a matching network, meta-trained with
    its own settings:

    >>> matching = MatchingNetClassifier(max_epochs=2, kernel="learned")
    >>> meta = EmbeddingKNNClassifier(embedding=matching, random_state=0).fit(tasks[:15])
    >>> meta.embedding_.kernel, meta.embedding_.random_state, meta.get_params()["embedding__max_epochs"]
    ('learned', 0, 2)
    >>> bool((meta.transform(tasks[15].X) == meta.embedding_.transform(tasks[15].X)).all())
    True
    """

    _parameter_constraints = {
        **MetaLearner._parameter_constraints,
        "embedding": "no_validation",  # _check_embedding says what is wrong and what to pass
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "weights": [StrOptions({"uniform", "distance"})],
    }

    def __init__(self, module=MLP, *, embedding=None, n_neighbors=3, weights="uniform", **kwargs):
        self.embedding = embedding
        self.n_neighbors = n_neighbors
        self.weights = weights
        super().__init__(module, **kwargs)

    # ------------------------------------------------------------ parameters

    def set_params(self, **params):
        """Set parameters, ``embedding__*`` ones on the ``embedding`` learner as in sklearn.

        Parameters
        ----------
        **params : dict
            Estimator parameters; routed ones (``module__*``, ...) as in
            skorch, ``embedding__<name>`` to the learner of ``embedding``.

        Returns
        -------
        self : object

        Examples
        --------
        >>> from skmeta import EmbeddingKNNClassifier, MatchingNetClassifier
        >>> meta = EmbeddingKNNClassifier(embedding=MatchingNetClassifier())
        >>> meta.set_params(embedding__lr=0.01).embedding.lr
        0.01
        """
        nested = {key: params.pop(key) for key in [k for k in params if k.startswith("embedding__")]}
        super().set_params(**params)
        if nested:
            if self.embedding is None:
                raise ValueError(
                    f"{sorted(nested)} set parameters of embedding, but embedding=None; set "
                    "embedding to a learner first (or in the same call), such as "
                    "embedding=MatchingNetClassifier()."
                )
            self.embedding.set_params(**{key.removeprefix("embedding__"): value
                                         for key, value in nested.items()})
        return self

    def _validate_params(self):
        super()._validate_params()
        embedding = _check_embedding(self.embedding)
        if embedding is None:
            return
        defaults = inspect.signature(MetaLearner.__init__).parameters
        name = type(embedding).__name__
        for parameter in _TRAINING_PARAMETERS:
            value = getattr(self, parameter)
            if not _same(value, defaults[parameter].default):
                raise ValueError(
                    f"{parameter}={value!r} has no effect with embedding={name}(...): that "
                    f"learner meta-trains the embedding with its own settings. Set "
                    f"embedding__{parameter}={value!r} instead (or {name}({parameter}=...)), "
                    f"and leave {parameter} out here."
                )
        routed = sorted(key for key in self.get_params(deep=False) if "__" in key)
        if routed:
            raise ValueError(
                f"{routed[0]}={getattr(self, routed[0])!r} has no effect with "
                f"embedding={name}(...), which builds and trains the embedding. Set "
                f"embedding__{routed[0]} instead, and leave it out here."
            )
        if embedding.warm_start:
            raise ValueError(
                f"embedding__warm_start=True has no effect: fit meta-trains a fresh clone of "
                f"{name}. Call partial_fit to continue meta-training the fitted one "
                "(embedding_), and leave warm_start at False."
            )
        columns = (self.task_column, embedding.task_column)
        if None not in columns and columns[0] != columns[1]:
            raise ValueError(
                f"task_column={self.task_column!r} differs from the task_column "
                f"{embedding.task_column!r} of embedding={name}(...); both read the same "
                "tasks. Set one of them, or the same column in both."
            )

    # ------------------------------------------------------------ meta-training by another learner

    @property
    def _fitted_embedding(self):
        """The fitted clone of ``embedding``, or None."""
        return self.__dict__.get("embedding_")

    def _check_continuation(self, how):
        """Raise if continuing meta-training would switch who trains the embedding."""
        if not self.initialized_:
            return
        fitted = self._fitted_embedding
        given = None if self.embedding is None else type(self.embedding)
        was = None if fitted is None else type(fitted)
        if given is not was:
            raise ValueError(
                f"embedding={'None' if given is None else given.__name__ + '(...)'} differs from "
                f"the fitted model's ({'None' if was is None else was.__name__ + '(...)'}); {how} "
                "cannot switch who meta-trains the embedding. Call fit (with warm_start=False)."
            )

    def fit(self, X, y=None, **fit_params):
        """Meta-train on a collection of tasks.

        Parameters
        ----------
        X : TaskCollection, list of Task or of (X, y) pairs, or DataFrame
            The tasks. A DataFrame is long format: one row per example, with
            the column named by ``task_column`` saying which task it is of.
        y : array-like of shape (n_rows,), default=None
            Targets, for long format only.
        **fit_params : dict
            Refused: meta-training weighs every episode alike.

        Returns
        -------
        self : object
            The meta-trained estimator.
        """
        if self.embedding is None:
            if self._fitted_embedding is None:
                return super().fit(X, y, **fit_params)
            if self.warm_start:
                self._check_continuation("warm_start")
            with self._all_or_nothing():
                del self.embedding_
                return super().fit(X, y, **fit_params)
        _refuse_plain_scorer(self)
        _refuse_fit_params(self, "fit", fit_params)
        self._validate_params()
        with self._all_or_nothing():
            self._read_embedding(self._new_embedding().fit(X, y), reset=True)
            return self

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        """Continue meta-training on tasks without re-initializing the embedding.

        With ``embedding``, the fitted clone (``embedding_``) continues,
        with its own lifelong settings; unfitted, a clone starts.

        Parameters
        ----------
        X, y : see :meth:`fit`.
        classes : None
            Unused; present for sklearn's API.
        **fit_params : dict
            Refused, as in :meth:`fit`.

        Returns
        -------
        self : object
        """
        self._check_continuation("partial_fit")
        if self.embedding is None:
            return super().partial_fit(X, y, classes=classes, **fit_params)
        fit_params.pop("_routing_method", None)
        _refuse_fit_params(self, "partial_fit", fit_params)
        if classes is not None:
            raise TypeError(
                f"{type(self).__name__}.partial_fit takes no classes: each episode's classes "
                "come from its task. Leave classes=None."
            )
        self._validate_params()
        learner = self._fitted_embedding
        if learner is None:
            learner = self._new_embedding()
        with self._all_or_nothing():
            self._read_embedding(learner.partial_fit(X, y), reset=not self.initialized_)
            return self

    def _new_embedding(self):
        """An unfitted clone of ``embedding``, with this learner's ``random_state`` and
        ``task_column`` where its own are None."""
        learner = clone(self.embedding)
        mine = {"random_state": self.random_state, "task_column": self.task_column}
        return learner.set_params(**{key: value for key, value in mine.items()
                                     if getattr(learner, key) is None})

    def _read_embedding(self, learner, *, reset):
        """Take the fitted state of the learner that meta-trained the embedding."""
        for name in ("replay_", "_tasks_seen", "_replay_rng", "_importance", "_anchor", "_torch_seed",
                     "_episode_rng", "_valid_seed", "_training_rng", "feature_names_in_", "prior_"):
            self.__dict__.pop(name, None)
        self.embedding_ = learner
        self.n_features_in_ = learner.n_features_in_
        if hasattr(learner, "feature_names_in_"):
            self.feature_names_in_ = learner.feature_names_in_
        self.n_ways_ = learner.n_ways_
        self._seen_tasks = learner._seen_tasks
        self._pooled_target_scale = 1.0
        self.stage_ = learner.stage_
        self.replay_ = []  # the learner keeps its own reservoir
        if reset:
            self.initialize()
        self.module_ = learner._embedding()
        self.history_ = learner.history_

    def __setattr__(self, name, value):
        super().__setattr__(name, value)
        if name == "embedding_" and "module_" in self.__dict__:
            # One set of weights: restoring embedding_ (a file, a copy) restores module_ with it.
            self.__dict__["module_"] = value._embedding()

    def __setstate__(self, state):
        super().__setstate__(state)
        learner = self.__dict__.get("embedding_")
        if learner is not None and "module_" in self.__dict__:
            self.__dict__["module_"] = learner._embedding()

    @contextlib.contextmanager
    def _on_device(self):
        learner = self._fitted_embedding
        if learner is None:
            with super()._on_device():
                yield
            return
        # The embedding lives where its learner put it.
        requested = self.device
        self.device_ = self.device = learner.device_
        try:
            yield
        finally:
            self.device = requested

    def initialize_module(self):
        """Build the embedding, or take the fitted ``embedding_``'s."""
        learner = self._fitted_embedding
        if learner is None:
            return super().initialize_module()
        self.module_ = learner._embedding()
        return self

    def get_all_learnable_params(self):
        """The embedding's parameters; none when ``embedding_`` trains it."""
        if self._fitted_embedding is None:
            yield from super().get_all_learnable_params()

    # ------------------------------------------------------------ the algorithm

    def _episode_loss(self, batch, training):
        n_ways = self.n_ways_
        loss, logits = prototypical_loss(self.module_, batch, n_ways, self._weighted_loss)
        if training:
            return loss, logits
        # Meta-validation scores what adapting does: the neighbours' vote.
        votes = [self._vote(batch.X_query[e], self._adapt(batch.X_support[e], batch.y_support[e], n_ways,
                                                          None if batch.support_weight is None
                                                          else batch.support_weight[e])[0])
                 for e in range(len(batch))]
        return loss, torch.stack(votes)

    def _adapt_task(self, X_support, y_support, n_classes=None, sample_weight=None, classes=None):
        n_voters = (len(y_support) if sample_weight is None
                    else int((np.asarray(sample_weight) > 0).sum()))
        if self.weights == "uniform" and self.n_neighbors >= n_voters:
            warnings.warn(
                f"n_neighbors={self.n_neighbors} is at least the {n_voters} support row(s): every "
                "query row's neighbours are the whole support set, so each gets the support's "
                "class shares and no row decides. Lower n_neighbors (1 at one shot per class), or "
                "set weights='distance'.",
                AdaptationWarning, stacklevel=external_stacklevel(),
            )
        return super()._adapt_task(X_support, y_support, n_classes, sample_weight, classes)

    def _adapt(self, X_support, y_support, n_classes, weight=None):
        with torch.no_grad():
            return {"support": self.module_(X_support), "labels": y_support, "n_classes": n_classes,
                    "weight": weight}, None

    def _vote(self, X, state):
        shares = neighbor_votes(self.module_(X), state["support"], state["labels"], state["n_classes"],
                                n_neighbors=self.n_neighbors, weights=self.weights,
                                support_weight=state["weight"])
        return shares.clamp_min(_PROBABILITY_FLOOR).log()

    def _predict_state(self, state, X):
        return self._vote(X, state)
