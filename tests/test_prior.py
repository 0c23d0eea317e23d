"""prior=: a pooled sklearn model, cross-fitted by task, that a meta-learned correction adds to."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import log_loss, mean_squared_error
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.neighbors import KNeighborsRegressor
from sklearn.utils._param_validation import InvalidParameterError
from skorch.callbacks import Callback

from skmeta import (
    FiLMClassifier,
    FiLMRegressor,
    FineTuneClassifier,
    FineTuneRegressor,
    MAMLClassifier,
    MAMLRegressor,
    ProtoNetClassifier,
)
from skmeta.mapping import FiLMNet
from skmeta.mapping._film import conditioned_outputs, encode_task
from skmeta.tasks import TaskCollection
from skmeta.utils import all_learners

FAST = dict(max_epochs=1, n_episodes=4, meta_batch_size=2, n_shots=2, n_queries=3,
            train_split=None, device="cpu", random_state=0, module__hidden_sizes=(8,))
#: An optimizer that cannot move the weights: each step changes them by ~1e-30.
FROZEN = dict(optimizer=torch.optim.SGD, lr=1e-30, adapt_steps=0)
#: The same for FiLM, which adapts in one forward pass, without steps.
FILM_FROZEN = dict(optimizer=torch.optim.SGD, lr=1e-30)


def group_table(n_groups, *, regression, n_rows=60, classes=(0, 1), seed=0):
    """Groups that share one rule and differ in base rate (or level).

    ``X ~ N(0, 1)`` (float32, as the learners compute); the score is
    ``X @ w`` plus a per-group offset; a classification group takes two of
    ``classes``, in turn, so that with three classes each task has a subset.
    """
    rng = np.random.default_rng(seed)
    w = np.array([1.0, -1.0, 0.5, 0.0])
    tasks = []
    for g in range(n_groups):
        X = rng.normal(size=(n_rows, 4)).astype(np.float32)
        z = X @ w + rng.normal()
        if regression:
            y = z + rng.normal(scale=0.5, size=n_rows)
        else:
            pair = np.array([classes[g % len(classes)], classes[(g + 1) % len(classes)]])
            y = np.sort(pair)[(rng.random(n_rows) < 1 / (1 + np.exp(-z))).astype(int)]
        tasks.append((X, y))
    return TaskCollection(tasks)


def _support(y, n):
    """The first ``n`` rows, or more until both classes are there."""
    k = n
    while np.unique(y[:k]).shape[0] < 2:
        k += 1
    return k


class TrainingTasks(Callback):
    """Keeps the task collection that skorch's loop meta-trains on."""

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.tasks = X


def _last_linear(module):
    return [m for m in module.modules() if isinstance(m, torch.nn.Linear)][-1].weight.detach()


# ------------------------------------------------------------ exactness


def _inner_loop_learners(kind):
    """Every learner of the optimization family (each takes ``prior=``), as test parameters."""
    return [pytest.param(cls, id=name) for name, cls in all_learners(kind)
            if cls.__module__.startswith("skmeta.optimization.")]


@pytest.mark.parametrize("Classifier", _inner_loop_learners("classifier"))
def test_an_untrained_unadapted_inner_loop_classifier_predicts_the_prior_exactly(Classifier):
    tasks = group_table(6, regression=False, classes=("a", "b", "c"))
    meta = Classifier(prior=LogisticRegression(), prior_cv=3, **{**FAST, **FROZEN}).fit(tasks)
    backbone = meta._backbone()
    assert backbone.module is not None  # the backbone, wrapped (inside the learner's container, if any)
    assert float(_last_linear(backbone).abs().max()) < 1e-20  # started at zero
    assert list(meta.prior_.classes_) == ["a", "b", "c"]

    new = group_table(2, regression=False, classes=("a", "b", "c"), seed=1)
    for task in new:  # classes ("a", "b"), then ("b", "c"): the matching columns
        adapted = meta.adapt(task.X[:10], task.y[:10])
        columns = np.searchsorted(meta.prior_.classes_, adapted.classes_)
        expected = meta.prior_.predict_proba(task.X)[:, columns]
        expected /= expected.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(adapted.predict_proba(task.X), expected, rtol=1e-6)
    task = tasks[0]  # classes ("a", "b") of three
    expected = meta.prior_.predict_proba(task.X)[:, :2]
    np.testing.assert_allclose(meta.predict_proba(task.X, task.X, task.y),
                               expected / expected.sum(axis=1, keepdims=True), rtol=1e-6)
    assert 0.5 < meta.score(new) <= 1


@pytest.mark.parametrize("standardize_targets", [False, True])
@pytest.mark.parametrize("Regressor", _inner_loop_learners("regressor"))
def test_an_untrained_unadapted_inner_loop_regressor_predicts_the_prior_exactly(Regressor,
                                                                               standardize_targets):
    tasks = group_table(6, regression=True)
    meta = Regressor(prior=Ridge(), prior_cv=3, standardize_targets=standardize_targets,
                     **{**FAST, **FROZEN}).fit(tasks)
    assert float(_last_linear(meta._backbone()).abs().max()) < 1e-20
    task = group_table(1, regression=True, seed=1)[0]
    X_support, y_support = task.X[:5], task.y[:5]
    expected = meta.prior_.predict(task.X)
    if standardize_targets:  # adapting from zero: the support's mean residual
        expected = expected + np.mean(y_support - meta.prior_.predict(X_support))
    np.testing.assert_allclose(meta.predict(task.X, X_support, y_support), expected, rtol=1e-6)


def test_with_steps_the_learned_optimizer_moves_the_correction_off_the_prior():
    from skmeta import MetaLSTMClassifier
    tasks = group_table(6, regression=False, classes=("a", "b", "c"))
    meta = MetaLSTMClassifier(prior=LogisticRegression(), prior_cv=3, **{**FAST, **FROZEN}).fit(tasks)
    assert meta._backbone() is meta.module_.network  # the wrapped backbone, in the container
    task = group_table(1, regression=False, classes=("a", "b", "c"), seed=1)[0]
    still = meta.adapt(task.X[:10], task.y[:10])
    moved = meta.set_params(adapt_steps=2).adapt(task.X[:10], task.y[:10])
    assert np.abs(moved.predict_proba(task.X) - still.predict_proba(task.X)).max() > 1e-4


def test_an_untrained_film_classifier_predicts_the_prior_exactly():
    tasks = group_table(6, regression=False, classes=("a", "b", "c"))
    meta = FiLMClassifier(prior=LogisticRegression(), prior_cv=3, **{**FAST, **FILM_FROZEN}).fit(tasks)
    assert isinstance(meta.module_, FiLMNet)  # not wrapped: the learner strips the offsets
    for layer in (meta.module_.code_weight, meta.module_.code_bias):  # W(c_k) and b(c_k) start at 0
        assert float(layer.weight.detach().abs().max()) < 1e-20
        assert float(layer.bias.detach().abs().max()) < 1e-20
    # The encoder reads each support row's 4 features, one-hot label and 2 offsets.
    assert meta.module_.encoder[0].in_features == 4 + 2 + 2 and meta.n_features_in_ == 4

    new = group_table(2, regression=False, classes=("a", "b", "c"), seed=1)
    for task in new:  # classes ("a", "b"), then ("b", "c"): the matching columns
        adapted = meta.adapt(task.X[:10], task.y[:10])
        columns = np.searchsorted(meta.prior_.classes_, adapted.classes_)
        expected = meta.prior_.predict_proba(task.X)[:, columns]
        expected /= expected.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(adapted.predict_proba(task.X), expected, rtol=1e-6)
        np.testing.assert_array_equal(adapted.predict(task.X), adapted.classes_[expected.argmax(axis=1)])
    task = tasks[0]  # classes ("a", "b") of three
    expected = meta.prior_.predict_proba(task.X)[:, :2]
    np.testing.assert_allclose(meta.predict_proba(task.X, task.X, task.y),
                               expected / expected.sum(axis=1, keepdims=True), rtol=1e-6)
    assert 0.5 < meta.score(new) <= 1


@pytest.mark.parametrize("standardize_targets", [False, True])
def test_an_untrained_film_regressor_predicts_the_prior_exactly(standardize_targets):
    tasks = group_table(6, regression=True)
    meta = FiLMRegressor(prior=Ridge(), prior_cv=3, standardize_targets=standardize_targets,
                         **{**FAST, **FILM_FROZEN}).fit(tasks)
    for layer in (meta.module_.code_weight, meta.module_.code_bias):
        assert float(layer.weight.detach().abs().max()) < 1e-20
        assert float(layer.bias.detach().abs().max()) < 1e-20
    assert meta.module_.encoder[0].in_features == 4 + 1  # features and the (residual) target
    task = group_table(1, regression=True, seed=1)[0]
    X_support, y_support = task.X[:5], task.y[:5]
    expected = meta.prior_.predict(task.X)
    if standardize_targets:  # a zero correction in standard units: the support's mean residual
        expected = expected + np.mean(y_support - meta.prior_.predict(X_support))
    np.testing.assert_allclose(meta.predict(task.X, X_support, y_support), expected, rtol=1e-6)


def test_a_trained_film_classifier_adds_the_prior_to_its_conditioned_logits():
    """The offsets reach the encoder with the support labels and the query logits, never the body."""
    tasks = group_table(6, regression=False)
    meta = FiLMClassifier(prior=LogisticRegression(), prior_cv=3, **{**FAST, "lr": 0.05}).fit(tasks)
    net = meta.module_
    assert float(net.code_weight.weight.detach().abs().max()) > 1e-3  # trained: no longer the prior alone
    task = group_table(1, regression=False, seed=1)[0]
    X_support, y_support, X_query = task.X[:10], task.y[:10], task.X[10:]
    log_prior = np.log(np.clip(meta.prior_.predict_proba(X_query), 1e-7, None))
    one_hot = torch.nn.functional.one_hot(torch.as_tensor(np.searchsorted([0, 1], y_support)), 2).float()
    support_offsets = torch.as_tensor(np.log(np.clip(meta.prior_.predict_proba(X_support), 1e-7, None)),
                                      dtype=torch.float32)
    with torch.no_grad():
        labels = torch.cat([one_hot, support_offsets], dim=-1)  # the prior's beside each label
        state = encode_task(net, torch.as_tensor(X_support), labels, one_hot)
        logits = conditioned_outputs(net, state, torch.as_tensor(X_query)).numpy().astype(np.float64)
    logits += log_prior
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    got = meta.adapt(X_support, y_support).predict_proba(X_query)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert np.abs(got - meta.prior_.predict_proba(X_query)).max() > 1e-3


# ------------------------------------------------------------ cross-fitting


def _folds(tasks, n_splits):
    """Per fold: (training task positions, held-out task positions), as the learner splits."""
    groups = np.repeat(np.arange(len(tasks)), [t.n_rows for t in tasks])
    for train, test in GroupKFold(n_splits=n_splits).split(groups, groups=groups):
        yield np.unique(groups[train]), np.unique(groups[test])


def test_classification_offsets_come_from_a_prior_fitted_without_the_task():
    tasks = group_table(7, regression=False, classes=(0, 1, 2))
    recorder = TrainingTasks()
    meta = MAMLClassifier(prior=LogisticRegression(), prior_cv=3, callbacks=[recorder], **FAST).fit(tasks)
    seen = recorder.tasks
    assert len(seen) == 7
    checked = 0
    for train, test in _folds(tasks, 3):
        reference = clone(meta.prior).fit(np.concatenate([tasks[i].X for i in train]),
                                          np.concatenate([tasks[i].y for i in train]))
        for i in test:
            X, y = tasks[i].X, tasks[i].y
            columns = np.searchsorted(reference.classes_, np.unique(y))
            expected = np.log(np.clip(reference.predict_proba(X), 1e-7, None))[:, columns]
            np.testing.assert_array_equal(seen[i].X[:, :4], X)  # the real features first
            np.testing.assert_allclose(seen[i].X[:, 4:], expected, rtol=1e-5, atol=1e-6)
            in_sample = np.log(meta.prior_.predict_proba(X))[:, columns]
            assert not np.allclose(seen[i].X[:, 4:], in_sample, atol=1e-4)
            checked += 1
    assert checked == 7
    assert meta.n_features_in_ == 4


def test_regression_residuals_come_from_a_prior_that_never_saw_the_task():
    # One nearest neighbour predicts its own training rows exactly: a
    # residual of 0 would give away a prior that saw the row's task.
    tasks = group_table(6, regression=True)
    recorder = TrainingTasks()
    MAMLRegressor(prior=KNeighborsRegressor(n_neighbors=1), callbacks=[recorder], **FAST).fit(tasks)
    seen = recorder.tasks
    for train, test in _folds(tasks, 5):  # prior_cv=5 folds of 6 tasks
        reference = KNeighborsRegressor(n_neighbors=1).fit(
            np.concatenate([tasks[i].X for i in train]), np.concatenate([tasks[i].y for i in train]))
        for i in test:
            residual = seen[i].y
            np.testing.assert_allclose(residual, tasks[i].y - reference.predict(tasks[i].X), rtol=1e-5)
            assert (residual != 0).all() and np.abs(residual).mean() > 0.3


def test_a_class_no_other_fold_has_gets_the_floor_offset_and_a_warning():
    tasks = group_table(4, regression=False, classes=("a", "b"))
    tasks[0].y[tasks[0].y == "b"] = "c"  # "c" only in task 0
    recorder = TrainingTasks()
    with pytest.warns(UserWarning, match=r"\['c'\] occur in the tasks of one fold"):
        MAMLClassifier(prior=LogisticRegression(), prior_cv=2, callbacks=[recorder], **FAST).fit(tasks)
    np.testing.assert_allclose(recorder.tasks[0].X[:, -1], np.log(1e-7), rtol=1e-6)  # column "c"


# ------------------------------------------------------------ learning


@pytest.mark.parametrize("regression", [False, True], ids=["classifier", "regressor"])
def test_with_a_prior_maml_beats_the_prior_alone_and_maml_without_it(regression):
    """Groups differ in base rate (level): 30 groups to meta-train on, 10 new ones.

    Measured (mean over the 10 new groups, 10 support rows): log-loss
    0.554 prior alone, 0.529 MAML with the prior, 0.683 without; MSE 0.465,
    0.288 and 1.78.
    """
    train = group_table(30, regression=regression)
    new = group_table(10, regression=regression, seed=1)
    settings = dict(max_epochs=1, n_episodes=32, meta_batch_size=8, n_shots=5, n_queries=10,
                    inner_lr=0.1, adapt_steps=5, lr=3e-3, train_split=None, device="cpu",
                    random_state=0, module__hidden_sizes=(16,))
    if regression:
        cls, prior, loss = MAMLRegressor, Ridge(), mean_squared_error
    else:  # episodes in each group's own class proportions: its base rate
        cls, prior, loss = MAMLClassifier, LogisticRegression(), log_loss
        settings["class_balance"] = "natural"
    with_prior = cls(prior=prior, **settings).fit(train)
    without = cls(**settings).fit(train)

    losses = {"prior": [], "with prior": [], "without": []}
    for task in new:
        k = 10 if regression else _support(task.y, 10)
        X_support, y_support, X_query, y_query = task.X[:k], task.y[:k], task.X[k:], task.y[k:]
        predict = "predict" if regression else "predict_proba"
        losses["prior"].append(loss(y_query, getattr(with_prior.prior_, predict)(X_query)))
        for name, meta in (("with prior", with_prior), ("without", without)):
            losses[name].append(loss(y_query, getattr(meta.adapt(X_support, y_support), predict)(X_query)))
    means = {name: float(np.mean(values)) for name, values in losses.items()}
    assert means["with prior"] <= means["prior"], means
    assert means["with prior"] < means["without"], means


@pytest.mark.parametrize("regression", [False, True], ids=["classifier", "regressor"])
def test_with_a_prior_film_is_no_worse_than_the_prior_alone(regression):
    """The same groups as for MAML: 30 to meta-train on, 10 new ones.

    Measured (mean over the 10 new groups, 10 support rows): log-loss
    0.554 prior alone, 0.543 FiLM with the prior, 0.552 without; MSE 0.465,
    0.274 and 1.03. With the prior, seeds 1-3 gave log-loss 0.522-0.540
    and MSE 0.274-0.281.
    """
    train = group_table(30, regression=regression)
    new = group_table(10, regression=regression, seed=1)
    settings = dict(max_epochs=10, n_episodes=64, meta_batch_size=8, n_shots=5, n_queries=10,
                    lr=2e-3, train_split=None, device="cpu", random_state=0)
    if regression:
        cls, prior, loss, predict = FiLMRegressor, Ridge(), mean_squared_error, "predict"
    else:  # episodes in each group's own class proportions: its base rate
        cls, prior, loss, predict = FiLMClassifier, LogisticRegression(), log_loss, "predict_proba"
        settings["class_balance"] = "natural"
    with_prior = cls(prior=prior, **settings).fit(train)
    without = cls(**settings).fit(train)

    losses = {"prior": [], "with prior": [], "without": []}
    for task in new:
        k = 10 if regression else _support(task.y, 10)
        X_support, y_support, X_query, y_query = task.X[:k], task.y[:k], task.X[k:], task.y[k:]
        losses["prior"].append(loss(y_query, getattr(with_prior.prior_, predict)(X_query)))
        for name, meta in (("with prior", with_prior), ("without", without)):
            losses[name].append(loss(y_query, getattr(meta.adapt(X_support, y_support), predict)(X_query)))
    means = {name: float(np.mean(values)) for name, values in losses.items()}
    assert means["with prior"] <= means["prior"], means
    assert means["with prior"] < means["without"], means


def test_grid_search_over_prior():
    tasks = group_table(9, regression=False)
    search = GridSearchCV(MAMLClassifier(**FAST), {"prior": [None, LogisticRegression()]}, cv=3).fit(tasks)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert [p["prior"] is None for p in search.cv_results_["params"]] == [True, False]
    assert hasattr(search.best_estimator_, "prior_") == (search.best_params_["prior"] is not None)
    # prior__* parameters reach the prior, as sklearn routes nested parameters
    meta = MAMLClassifier(prior=LogisticRegression()).set_params(prior__C=0.5)
    assert meta.prior.C == 0.5 and meta.get_params()["prior__C"] == 0.5
    assert clone(meta).prior.C == 0.5


# ------------------------------------------------------------ bad use


def test_what_cannot_work_is_refused_with_the_fix():
    tasks = group_table(6, regression=False)
    with pytest.raises(ValueError, match=r"prior=LogisticRegression\(\) needs n_ways=None"):
        MAMLClassifier(prior=LogisticRegression(), n_ways=2, **FAST).fit(tasks)
    with pytest.raises(ValueError, match=r"prior=Ridge\(\) has no predict_proba.*LogisticRegression"):
        MAMLClassifier(prior=Ridge(), **FAST).fit(tasks)
    with pytest.raises(ValueError, match=r"is a classifier.*Ridge\(\)"):
        MAMLRegressor(prior=LogisticRegression(), **FAST).fit(group_table(6, regression=True))
    with pytest.raises(ValueError, match="needs 2 tasks at least; got 1"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MAMLClassifier(prior=LogisticRegression(), **FAST).fit(tasks[:1])
    with pytest.raises(InvalidParameterError, match="prior_cv"):
        MAMLClassifier(prior=LogisticRegression(), prior_cv=1, **FAST).fit(tasks)
    with pytest.raises(InvalidParameterError, match="prior"):
        MAMLClassifier(prior="pooled", **FAST).fit(tasks)
    with pytest.raises(ValueError, match=r"output layer is a torch.nn.Linear"):
        params = {k: v for k, v in FAST.items() if not k.startswith("module__")}
        MAMLClassifier(torch.nn.Sequential(torch.nn.ReLU()), prior=LogisticRegression(), **params).fit(tasks)

    meta = MAMLClassifier(prior=LogisticRegression(), **FAST).fit(tasks)
    X = tasks[0].X[:6]
    with pytest.raises(ValueError, match=r"label\(s\) \[7\] that prior_ .* never saw.*prior=None"):
        meta.adapt(X, [0, 7, 0, 7, 0, 7])
    meta.set_params(warm_start=True, prior=None)
    with pytest.raises(ValueError, match="meta-trained with a prior.*warm_start=False"):
        meta.fit(tasks)
    with pytest.raises((TypeError, ValueError), match="prior"):
        ProtoNetClassifier(prior=LogisticRegression(), **FAST).fit(tasks)


@pytest.mark.parametrize("classifier, regressor", [(FiLMClassifier, FiLMRegressor)], ids=["FiLM"])
def test_what_cannot_work_with_film_is_refused_with_the_fix(classifier, regressor):
    tasks = group_table(6, regression=False)
    with pytest.raises(ValueError, match=r"prior=LogisticRegression\(\) needs n_ways=None"):
        classifier(prior=LogisticRegression(), n_ways=2, **FAST).fit(tasks)
    with pytest.raises(ValueError, match=r"prior=Ridge\(\) has no predict_proba.*LogisticRegression"):
        classifier(prior=Ridge(), **FAST).fit(tasks)
    with pytest.raises(ValueError, match=r"is a classifier.*Ridge\(\)"):
        regressor(prior=LogisticRegression(), **FAST).fit(group_table(6, regression=True))
    with pytest.raises(ValueError, match="needs 2 tasks at least; got 1"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        classifier(prior=LogisticRegression(), **FAST).fit(tasks[:1])
    with pytest.raises(InvalidParameterError, match="prior_cv"):
        regressor(prior=Ridge(), prior_cv=1, **FAST).fit(group_table(6, regression=True))
    with pytest.raises(InvalidParameterError, match="prior"):
        classifier(prior="pooled", **FAST).fit(tasks)
    # A FiLMNet built for the labels alone cannot read the offsets beside them.
    params = {k: v for k, v in FAST.items() if not k.startswith("module__")}
    with pytest.raises(ValueError, match=r"read 4 label columns .* reads 2; pass module=FiLMNet \(a class\)"):
        classifier(FiLMNet(4, 2, hidden_sizes=(8,)), prior=LogisticRegression(), **params).fit(tasks)

    meta = classifier(prior=LogisticRegression(), **FAST).fit(tasks)
    X = tasks[0].X[:6]
    with pytest.raises(ValueError, match=r"label\(s\) \[7\] that prior_ .* never saw.*prior=None"):
        meta.adapt(X, [0, 7, 0, 7, 0, 7])
    meta.set_params(warm_start=True, prior=None)
    with pytest.raises(ValueError, match="meta-trained with a prior.*warm_start=False"):
        meta.fit(tasks)
    meta.set_params(warm_start=False)
    assert not hasattr(meta.fit(tasks), "prior_")  # refit without: the plain network
    assert meta.module_.encoder[0].in_features == 4 + 2


# ------------------------------------------------------------ FineTune (pooled pre-training)

#: FAST without the episode parameters, which pooled pre-training refuses.
POOLED_FAST = {k: v for k, v in FAST.items() if k not in ("n_episodes", "meta_batch_size")}


def three_class_table(n_groups, seed=0):
    """Groups that all hold the same three classes, with a per-group shift of the scores."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(4, 3))
    tasks = []
    for _ in range(n_groups):
        X = rng.normal(size=(60, 4)).astype(np.float32)
        scores = X @ W + rng.normal(size=3) + rng.gumbel(size=(60, 3))
        y = np.array(["a", "b", "c"])[np.argmax(scores, axis=1)]
        tasks.append((X, y))
    return TaskCollection(tasks)


def test_an_untrained_unadapted_finetune_classifier_predicts_the_prior_exactly():
    tasks = three_class_table(6)
    meta = FineTuneClassifier(prior=LogisticRegression(), prior_cv=3,
                              **{**POOLED_FAST, **FROZEN}).fit(tasks)
    assert float(_last_linear(meta.module_).abs().max()) < 1e-20  # started at zero
    assert list(meta.prior_.classes_) == list(meta.classes_pooled_) == ["a", "b", "c"]
    task = three_class_table(1, seed=1)[0]
    # All three classes, then a support of "a" and "c" only: the head's rows and
    # the offset columns both follow the support's classes.
    for keep in (["a", "b", "c"], ["a", "c"]):
        rows = np.flatnonzero(np.isin(task.y, keep))
        adapted = meta.adapt(task.X[rows[:15]], task.y[rows[:15]])
        assert list(adapted.classes_) == keep
        expected = meta.prior_.predict_proba(task.X)[:, np.searchsorted(meta.prior_.classes_, keep)]
        expected /= expected.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(adapted.predict_proba(task.X), expected, rtol=1e-6)
        np.testing.assert_array_equal(adapted.predict(task.X), adapted.classes_[expected.argmax(axis=1)])


@pytest.mark.parametrize("standardize_targets", [False, True])
def test_an_untrained_unadapted_finetune_regressor_predicts_the_prior_exactly(standardize_targets):
    tasks = group_table(6, regression=True)
    recorder = TrainingTasks()
    meta = FineTuneRegressor(prior=Ridge(), prior_cv=3, standardize_targets=standardize_targets,
                             callbacks=[recorder], **{**POOLED_FAST, **FROZEN}).fit(tasks)
    assert float(_last_linear(meta.module_).abs().max()) < 1e-20
    # Pooled pre-training sees residuals of the cross-fitted prior, not the targets.
    assert all(np.abs(seen.y - task.y).mean() > 0.3 for seen, task in zip(recorder.tasks, tasks, strict=True))
    task = group_table(1, regression=True, seed=1)[0]
    X_support, y_support = task.X[:5], task.y[:5]
    expected = meta.prior_.predict(task.X)
    if standardize_targets:  # adapting from zero: the support's mean residual
        expected = expected + np.mean(y_support - meta.prior_.predict(X_support))
    np.testing.assert_allclose(meta.predict(task.X, X_support, y_support), expected, rtol=1e-6)


@pytest.mark.parametrize("regression", [False, True], ids=["classifier", "regressor"])
def test_with_a_prior_finetune_is_no_worse_than_the_prior_alone(regression):
    """The same groups as for MAML: 30 to pre-train on, 10 new ones.

    Measured (mean over the 10 new groups, 10 support rows): log-loss
    0.554 prior alone, 0.529 FineTune with the prior, 0.537 without; MSE
    0.465, 0.291 and 0.425. Seed 1 gave 0.529 and 0.291 with the prior.
    """
    train = group_table(30, regression=regression)
    new = group_table(10, regression=regression, seed=1)
    settings = dict(max_epochs=10, lr=1e-3, inner_lr=0.1, adapt_steps=10, train_split=None,
                    device="cpu", random_state=0, module__hidden_sizes=(16,))
    if regression:
        cls, prior, loss, predict = FineTuneRegressor, Ridge(), mean_squared_error, "predict"
    else:
        cls, prior, loss, predict = FineTuneClassifier, LogisticRegression(), log_loss, "predict_proba"
    meta = cls(prior=prior, **settings).fit(train)
    assert float(_last_linear(meta.module_).abs().max()) > 1e-3  # trained: no longer the prior alone

    losses = {"prior": [], "with prior": []}
    for task in new:
        k = 10 if regression else _support(task.y, 10)
        X_support, y_support, X_query, y_query = task.X[:k], task.y[:k], task.X[k:], task.y[k:]
        losses["prior"].append(loss(y_query, getattr(meta.prior_, predict)(X_query)))
        adapted = meta.adapt(X_support, y_support)
        losses["with prior"].append(loss(y_query, getattr(adapted, predict)(X_query)))
    means = {name: float(np.mean(values)) for name, values in losses.items()}
    assert means["with prior"] <= means["prior"], means


def test_what_cannot_work_with_finetune_is_refused_with_the_fix():
    tasks = group_table(6, regression=False)
    with pytest.raises(ValueError, match=r"prior=LogisticRegression\(\) needs n_ways=None"):
        FineTuneClassifier(prior=LogisticRegression(), n_ways=2, **POOLED_FAST).fit(tasks)
    with pytest.raises(ValueError, match=r"prior=Ridge\(\) has no predict_proba"):
        FineTuneClassifier(prior=Ridge(), **POOLED_FAST).fit(tasks)
    with pytest.raises(ValueError, match=r"is a classifier.*Ridge\(\)"):
        FineTuneRegressor(prior=LogisticRegression(), **POOLED_FAST).fit(group_table(6, regression=True))
    with pytest.raises(InvalidParameterError, match="prior_cv"):
        FineTuneRegressor(prior=Ridge(), prior_cv=1, **POOLED_FAST).fit(group_table(6, regression=True))
    # Each task with two of three classes: its offset columns are not the pooled head's.
    subsets = group_table(6, regression=False, classes=("a", "b", "c"))
    with pytest.raises(ValueError, match=r"prior=LogisticRegression\(\) with pooled pre-training needs "
                                         r"every task to hold every pooled class.*or set prior=None"):
        FineTuneClassifier(prior=LogisticRegression(), **POOLED_FAST).fit(subsets)
    assert FineTuneClassifier(**POOLED_FAST).fit(subsets).classes_pooled_.shape == (3,)  # fine without

    meta = FineTuneClassifier(prior=LogisticRegression(), **POOLED_FAST).fit(tasks)
    with pytest.raises(ValueError, match=r"label\(s\) \[7\] that prior_ .* never saw.*prior=None"):
        meta.adapt(tasks[0].X[:6], [0, 7, 0, 7, 0, 7])
    meta.set_params(warm_start=True, prior=None)
    with pytest.raises(ValueError, match="meta-trained with a prior.*warm_start=False"):
        meta.fit(tasks)


def test_anil_adapts_the_same_with_a_prior_whether_it_caches_the_support_embedding_or_not():
    from skmeta import ANILClassifier
    tasks = group_table(6, regression=False, classes=("a", "b", "c"))
    settings = {**FAST, "max_epochs": 2, "adapt_steps": 5}
    cached = ANILClassifier(prior=LogisticRegression(), prior_cv=3, **settings).fit(tasks)
    uncached = ANILClassifier(prior=LogisticRegression(), prior_cv=3, cache_support_embedding=False,
                              **settings).fit(tasks)
    task = group_table(1, regression=False, classes=("a", "b", "c"), seed=1)[0]
    got = cached.predict_proba(task.X, task.X[:10], task.y[:10])
    np.testing.assert_allclose(got, uncached.predict_proba(task.X, task.X[:10], task.y[:10]),
                               rtol=1e-5, atol=1e-6)
    # ... and the comparison can see a difference: adapting moved them off the prior's.
    frozen = ANILClassifier(prior=LogisticRegression(), prior_cv=3, **{**settings, **FROZEN}).fit(tasks)
    assert np.abs(got - frozen.predict_proba(task.X, task.X[:10], task.y[:10])).max() > 1e-3
