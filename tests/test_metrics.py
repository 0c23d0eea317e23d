"""Episodic scorers: sklearn metrics per task after adapting, in sklearn's model selection.

The reference is a per-task loop written here from scratch: split the rows
by task, draw the support set with an EpisodeSampler of the learner's
settings from one seeded stream, adapt, and apply sklearn's metric function
to the task's other rows.
"""

import pickle

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    log_loss,
    make_scorer,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
)
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold, cross_val_score, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from skmeta import MAMLRegressor, ProtoNetClassifier, make_task_preprocessor
from skmeta.datasets import load_adult_tasks, make_blob_tasks, make_sinusoid_tasks
from skmeta.metrics import _refuse_plain_scorer, episodic_score, make_episodic_scorer
from skmeta.pipeline import make_meta_pipeline
from skmeta.tasks import EpisodeSampler, Task, TaskCollection

TINY = dict(
    max_epochs=1,
    n_episodes=8,
    meta_batch_size=4,
    n_shots=2,
    n_queries=3,
    train_split=None,
    device="cpu",
    random_state=0,
    module__hidden_sizes=(8,),
)
REGRESSOR = dict(TINY, inner_lr=0.01)
OCCUPATIONS = ["Adm-clerical", "Craft-repair", "Exec-managerial", "Farming-fishing", "Handlers-cleaners",
               "Other-service", "Prof-specialty", "Sales", "Tech-support"]


# ----------------------------------------------------------------- the data


@pytest.fixture(scope="module")
def adult():
    """Nine occupations, 15 rows of each income class: raw features, labels, groups."""
    df = load_adult_tasks(return_frame=True)
    df = df[df["occupation"].isin(OCCUPATIONS)].groupby(["occupation", "income"]).head(15)
    df = df.reset_index(drop=True)
    X, y = df.drop(columns="income"), df["income"].to_numpy()
    return X, y, X["occupation"].to_numpy()


def _adult_pipeline(X):
    return make_meta_pipeline(make_task_preprocessor(X, "occupation"),
                              ProtoNetClassifier(task_column="occupation", **TINY))


@pytest.fixture(scope="module")
def linear_groups():
    """Six groups of 12 rows, each with its own linear target of 3 features."""
    rng = np.random.default_rng(0)
    frames, targets = [], []
    for g in range(6):
        X = rng.normal(size=(12, 3)) * [1.0, 10.0, 100.0] + [0.0, 5.0, 50.0]
        weights = rng.normal(size=3) * [1.0, 0.1, 0.01]
        frames.append(pd.DataFrame(X, columns=["a", "b", "c"]).assign(group=f"g{g}"))
        targets.append(X @ weights + rng.normal())
    X = pd.concat(frames, ignore_index=True)
    return X, np.concatenate(targets), X["group"].to_numpy()


def _long_frame(tasks, column="task"):
    """Tasks as one long-format frame and its targets."""
    columns = [f"x{i}" for i in range(tasks[0].X.shape[1])]
    X = pd.concat([pd.DataFrame(t.X, columns=columns).assign(**{column: t.name}) for t in tasks],
                  ignore_index=True)
    return X, np.concatenate([t.y for t in tasks])


# ---------------------------------------------------- the reference, by hand


def _by_hand(estimator, X, y, metric, *, n_shots=None, seed=None, sample_weight=None):
    """Mean over tasks of ``metric(y_true, adapted, X_query, weights)``, by hand.

    ``estimator`` is a fitted meta-pipeline (raw long-format ``X``) or meta-learner.
    """
    meta = estimator[-1] if hasattr(estimator, "steps") else estimator
    transform = estimator[:-1].transform if hasattr(estimator, "steps") else (lambda rows: rows)
    sampler = EpisodeSampler(n_ways=meta.n_ways, n_shots=n_shots or meta.n_shots,
                             n_queries=meta.n_queries, classification=meta._classification)
    rng = np.random.default_rng(meta.random_state if seed is None else seed)
    column = meta.task_column
    weight = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    values = []
    for name in np.unique(X[column]):
        rows = np.flatnonzero((X[column] == name).to_numpy())
        features = transform(X.iloc[rows]).drop(columns=column)
        # Each row's weight travels with it as a last column.
        data = np.column_stack([features.to_numpy(), weight[rows]])
        episode = sampler.sample(data, y[rows], rng, query="rest")
        y_support, y_query = episode.y_support, episode.y_query
        if episode.classes is not None:  # episode labels back to the task's own
            y_support, y_query = episode.classes[y_support], episode.classes[y_query]
        adapted = meta.adapt(pd.DataFrame(episode.X_support[:, :-1], columns=features.columns), y_support)
        X_query = pd.DataFrame(episode.X_query[:, :-1], columns=features.columns)
        weights = None if sample_weight is None else episode.X_query[:, -1]
        values.append(metric(y_query, adapted, X_query, weights))
    return float(np.mean(values))


def _auc(y_true, clf, X, weights):
    return roc_auc_score(y_true, clf.predict_proba(X)[:, 1], sample_weight=weights)


def _neg_log_loss(y_true, clf, X, weights):
    return -log_loss(y_true, clf.predict_proba(X), labels=clf.classes_, sample_weight=weights)


def _accuracy(y_true, clf, X, weights):
    return accuracy_score(y_true, clf.predict(X), sample_weight=weights)


def _neg_mae(y_true, reg, X, weights):
    return -mean_absolute_error(y_true, reg.predict(X), sample_weight=weights)


def _r2(y_true, reg, X, weights):
    return r2_score(y_true, reg.predict(X), sample_weight=weights)


# ------------------------------------------- the default metric is `score`


@pytest.mark.parametrize("n_ways", [None, 2])
def test_default_metric_is_the_meta_learners_score(n_ways):
    tasks = make_blob_tasks(n_tasks=8, n_classes=3, n_rows_per_class=8, n_features=4, random_state=0)
    meta = ProtoNetClassifier(**TINY, n_ways=n_ways, task_column="task").fit(*_long_frame(tasks[:5]))
    X, y = _long_frame(tasks[5:])
    new_tasks = TaskCollection.from_arrays(X.drop(columns="task"), y, X["task"])
    assert episodic_score(meta, new_tasks) == meta.score(new_tasks)
    assert make_episodic_scorer("accuracy")(meta, new_tasks) == meta.score(new_tasks)
    assert episodic_score(meta, X, y) == meta.score(X, y)
    assert episodic_score(meta, X, y) == pytest.approx(_by_hand(meta, X, y, _accuracy), abs=1e-12)


def test_default_metric_of_a_regressor_is_its_score():
    tasks = make_sinusoid_tasks(8, n_rows=10, random_state=0)
    meta = MAMLRegressor(**REGRESSOR).fit(tasks[:5])
    assert episodic_score(meta, tasks[5:]) == pytest.approx(meta.score(tasks[5:]), rel=1e-6)
    assert make_episodic_scorer("r2")(meta, tasks[5:]) == pytest.approx(meta.score(tasks[5:]), rel=1e-6)


# -------------------------------------------------- sklearn's model selection


def test_cross_validate_a_meta_pipeline_with_two_episodic_scorers(adult):
    X, y, groups = adult
    scoring = {"auc": make_episodic_scorer("roc_auc"), "ll": make_episodic_scorer("neg_log_loss")}
    result = cross_validate(_adult_pipeline(X), X, y, groups=groups, cv=GroupKFold(3), scoring=scoring,
                            return_estimator=True, return_indices=True)
    assert np.isfinite(result["test_auc"]).all() and np.isfinite(result["test_ll"]).all()
    assert (result["test_ll"] < 0).all()
    for fold, pipe in enumerate(result["estimator"]):
        test = result["indices"]["test"][fold]
        X_test, y_test = X.iloc[test], y[test]
        assert result["test_auc"][fold] == pytest.approx(_by_hand(pipe, X_test, y_test, _auc), abs=1e-9)
        assert result["test_ll"][fold] == pytest.approx(
            _by_hand(pipe, X_test, y_test, _neg_log_loss), abs=1e-9
        )


def test_grid_search_with_episodic_scorers_refits_the_best_by_auc(adult):
    X, y, groups = adult
    held_out = np.isin(groups, ["Sales", "Tech-support", "Craft-repair"])
    scoring = {"auc": make_episodic_scorer("roc_auc"), "ll": make_episodic_scorer("neg_log_loss")}
    search = GridSearchCV(_adult_pipeline(X), {"protonetclassifier__lr": [1e-3, 1e-1]}, scoring=scoring,
                          refit="auc", cv=GroupKFold(2))
    search.fit(X[~held_out], y[~held_out], groups=groups[~held_out])

    results = search.cv_results_
    assert np.isfinite(results["mean_test_auc"]).all() and np.isfinite(results["mean_test_ll"]).all()
    assert search.best_index_ == np.argmax(results["mean_test_auc"])
    assert search.best_score_ == results["mean_test_auc"][search.best_index_]
    assert search.score(X[held_out], y[held_out]) == scoring["auc"](
        search.best_estimator_, X[held_out], y[held_out]
    )


def test_cross_validate_a_regressor_with_episodic_scorers(linear_groups):
    X, y, groups = linear_groups
    pipe = make_meta_pipeline(make_task_preprocessor(X, "group"),
                              MAMLRegressor(task_column="group", **REGRESSOR))
    scoring = {"mae": make_episodic_scorer("neg_mean_absolute_error"), "r2": make_episodic_scorer("r2")}
    result = cross_validate(pipe, X, y, groups=groups, cv=GroupKFold(3), scoring=scoring,
                            return_estimator=True, return_indices=True)
    assert np.isfinite(result["test_mae"]).all() and (result["test_mae"] < 0).all()
    assert np.isfinite(result["test_r2"]).all()
    for fold, fitted in enumerate(result["estimator"]):
        test = result["indices"]["test"][fold]
        X_test, y_test = X.iloc[test], y[test]
        assert result["test_mae"][fold] == pytest.approx(_by_hand(fitted, X_test, y_test, _neg_mae), rel=1e-5)
        assert result["test_r2"][fold] == pytest.approx(_by_hand(fitted, X_test, y_test, _r2), rel=1e-5)
        # The default score of the pipeline is the episodic R².
        assert fitted.score(X_test, y_test) == result["test_r2"][fold]


def test_cross_val_score_on_a_task_collection():
    tasks = make_sinusoid_tasks(9, n_rows=10, random_state=0)
    scores = cross_val_score(MAMLRegressor(**REGRESSOR), tasks, cv=KFold(3),
                             scoring=make_episodic_scorer("neg_mean_absolute_error"))
    assert scores.shape == (3,) and np.isfinite(scores).all() and (scores < 0).all()


# ----------------------------------------------------- options of the scorer


@pytest.fixture(scope="module")
def blobs():
    """A ProtoNet fitted on six tasks, and four new ones in long format."""
    tasks = make_blob_tasks(n_tasks=10, n_rows_per_class=10, n_features=4, random_state=0)
    meta = ProtoNetClassifier(**TINY, task_column="task").fit(*_long_frame(tasks[:6]))
    return meta, *_long_frame(tasks[6:])


def test_n_shots_and_random_state_draw_the_support_sets(blobs):
    meta, X, y = blobs
    default = make_episodic_scorer("roc_auc")
    assert default(meta, X, y) == make_episodic_scorer("roc_auc", random_state=0)(meta, X, y)
    assert default(meta, X, y) == pytest.approx(_by_hand(meta, X, y, _auc), abs=1e-12)
    for n_shots, seed in [(1, 0), (4, 7)]:
        scorer = make_episodic_scorer("roc_auc", n_shots=n_shots, random_state=seed)
        expected = _by_hand(meta, X, y, _auc, n_shots=n_shots, seed=seed)
        assert scorer(meta, X, y) == pytest.approx(expected, abs=1e-12)
    # An unseeded learner draws from seed 0, as its score does.
    unseeded = clone(meta).set_params(random_state=None).fit(X, y)
    assert make_episodic_scorer("roc_auc")(unseeded, X, y) == pytest.approx(
        _by_hand(unseeded, X, y, _auc, seed=0), abs=1e-12
    )


def test_sample_weight_weighs_the_query_rows(blobs):
    meta, X, y = blobs
    weight = np.random.default_rng(0).uniform(0.1, 2.0, size=len(y))
    scorer = make_episodic_scorer("accuracy")
    weighted = scorer(meta, X, y, sample_weight=weight)
    assert weighted == pytest.approx(_by_hand(meta, X, y, _accuracy, sample_weight=weight), abs=1e-12)
    assert scorer(meta, X, y, sample_weight=np.ones(len(y))) == pytest.approx(scorer(meta, X, y), abs=1e-12)

    tasks = TaskCollection.from_arrays(X.drop(columns="task"), y, X["task"])
    with pytest.raises(ValueError, match="long-format DataFrame X"):
        episodic_score(meta, tasks, sample_weight=weight)
    unweighted = make_episodic_scorer(lambda estimator, X, y: 1.0)
    with pytest.raises(ValueError, match="takes no sample_weight"):
        unweighted(meta, X, y, sample_weight=weight)


def test_sample_weight_is_routed_to_episodic_scorers(blobs):
    meta, X, y = blobs
    weight = np.random.default_rng(1).uniform(0.1, 2.0, size=len(y))
    with sklearn.config_context(enable_metadata_routing=True):
        scorer = make_episodic_scorer("accuracy").set_score_request(sample_weight=True)
        result = cross_validate(clone(meta), X, y, cv=GroupKFold(2), scoring={"acc": scorer},
                                params={"sample_weight": weight, "groups": X["task"]},
                                return_estimator=True, return_indices=True)
    for fold, fitted in enumerate(result["estimator"]):
        test = result["indices"]["test"][fold]
        expected = _by_hand(fitted, X.iloc[test], y[test], _accuracy, sample_weight=weight[test])
        assert result["test_acc"][fold] == pytest.approx(expected, abs=1e-12)


def test_a_scorer_made_by_make_scorer_is_used_as_it_is(blobs):
    meta, X, y = blobs
    scorer = make_episodic_scorer(make_scorer(accuracy_score))
    assert scorer(meta, X, y) == meta.score(X, y)


def test_tasks_where_the_metric_is_undefined_are_left_out_with_one_warning():
    tasks = make_sinusoid_tasks(7, n_rows=10, random_state=0)
    meta = MAMLRegressor(**REGRESSOR).fit(tasks[:4])
    one_query_row = [Task(t.X[:3], t.y[:3], name=f"short_{i}") for i, t in enumerate(tasks[4:6])]
    with pytest.warns(UndefinedMetricWarning, match=r"2 of 3 tasks \('short_0', 'short_1'\)") as record:
        score = episodic_score(meta, TaskCollection([tasks[6], *one_query_row]))
    assert len([w for w in record if w.category is UndefinedMetricWarning]) == 1
    assert score == episodic_score(meta, tasks[6:])
    with pytest.raises(ValueError, match="undefined on the query rows of every task"):
        episodic_score(meta, TaskCollection(one_query_row))


def test_tasks_that_cannot_give_an_episode_are_left_out_with_one_warning(blobs):
    meta, X, y = blobs
    lonely = (X["task"] == X["task"].iloc[0]).to_numpy() & (y == 1)
    lonely[np.flatnonzero(lonely)[0]] = False  # one row of class 1 is left in that task
    with pytest.warns(UserWarning, match=r"Left out 1 task\(s\) that cannot give a support and a query"):
        score = episodic_score(meta, X[~lonely], y[~lonely])
    others = (X["task"] != X["task"].iloc[0]).to_numpy()
    assert score == episodic_score(meta, X[others], y[others])


def test_scorer_repr_and_pickle(blobs):
    meta, X, y = blobs
    scorer = make_episodic_scorer("balanced_accuracy", n_shots=3, random_state=1)
    assert repr(scorer) == "make_episodic_scorer('balanced_accuracy', n_shots=3, random_state=1)"
    assert pickle.loads(pickle.dumps(scorer))(meta, X, y) == scorer(meta, X, y)


def test_make_episodic_scorer_checks_its_arguments(blobs):
    meta, X, y = blobs
    with pytest.raises(ValueError, match="not a valid scoring value"):
        make_episodic_scorer("roc_auk")
    with pytest.raises(ValueError, match="make_scorer"):
        make_episodic_scorer(roc_auc_score)  # a metric, not a scorer
    with pytest.raises(InvalidParameterError, match="n_shots"):
        make_episodic_scorer("accuracy", n_shots=0)
    with pytest.raises(InvalidParameterError, match="random_state"):
        make_episodic_scorer("accuracy", random_state=np.random.RandomState(0))
    with pytest.raises(ValueError, match="already episodic"):
        make_episodic_scorer(make_episodic_scorer("accuracy"))
    with pytest.raises(TypeError, match="needs a meta-learner"):
        make_episodic_scorer("accuracy")(LogisticRegression(), X, y)
    with pytest.raises(TypeError, match="got Pipeline ending in LogisticRegression"):
        make_episodic_scorer("accuracy")(make_pipeline(StandardScaler(), LogisticRegression()), X, y)


# ------------------------------------- a plain sklearn scorer on a meta-learner


class _Checks(ClassifierMixin, BaseEstimator):
    """Asks, when fitted, whether sklearn's model selection will score it plainly."""

    def fit(self, X, y):
        _refuse_plain_scorer(self)
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])


def test_refuse_plain_scorer_finds_the_scorer_of_the_fit():
    X, y = np.arange(24.0).reshape(12, 2), np.array([0, 1] * 6)
    with pytest.raises(ValueError, match=r"make_episodic_scorer.*Got scoring .*make_scorer\(accuracy_score"):
        cross_val_score(_Checks(), X, y, cv=3, scoring="accuracy", error_score="raise")
    with pytest.raises(ValueError, match="All the 3 fits failed"):  # not a silent NaN
        cross_val_score(_Checks(), X, y, cv=3, scoring="roc_auc")
    with pytest.raises(ValueError, match="Got scoring 'acc': make_scorer"):
        cross_validate(make_pipeline(StandardScaler(), _Checks()), X, y, cv=3, error_score="raise",
                       scoring={"episodic": make_episodic_scorer("accuracy"), "acc": "accuracy"})
    # The estimator's own score, or a scorer of one's own: fitted as usual.
    assert cross_val_score(_Checks(), X, y, cv=3).shape == (3,)
    assert cross_val_score(_Checks(), X, y, cv=3, scoring=lambda est, X, y: 0.5).tolist() == [0.5] * 3
    _Checks().fit(X, y)  # outside model selection


def test_a_plain_scorer_on_a_meta_learner_names_the_episodic_scorer():
    tasks = make_blob_tasks(n_tasks=6, n_rows_per_class=10, n_features=4, random_state=0)
    meta = ProtoNetClassifier(**TINY)
    with pytest.raises(ValueError, match="make_episodic_scorer"):
        cross_val_score(meta, tasks, cv=3, scoring="roc_auc", error_score="raise")
    with pytest.raises(ValueError, match="make_episodic_scorer"):  # all fits fail, not NaN
        cross_val_score(meta, tasks, cv=3, scoring="accuracy")
    X, y = _long_frame(tasks)
    with pytest.raises(ValueError, match="make_episodic_scorer"):
        cross_val_score(meta.set_params(task_column="task"), X, y, groups=X["task"], cv=GroupKFold(3),
                        scoring="roc_auc", error_score="raise")


def test_a_plain_scorer_on_a_meta_regressor_names_the_episodic_scorer():
    tasks = make_sinusoid_tasks(6, n_rows=10, random_state=0)
    with pytest.raises(ValueError, match="make_episodic_scorer"):
        cross_val_score(MAMLRegressor(**REGRESSOR), tasks, cv=3, scoring="r2", error_score="raise")
