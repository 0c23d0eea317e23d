"""The estimators that ``adapt`` returns (skmeta/_adapted.py)."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.exceptions import DataConversionWarning, NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import cross_val_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from skmeta import AdaptedClassifier, AdaptedRegressor, MAMLClassifier, MAMLRegressor, ProtoNetClassifier
from skmeta.datasets import make_blob_tasks
from skmeta.tasks import Task, TaskCollection

#: The width the meta-learners of this file are meta-trained on: the one most
#: of sklearn's estimator checks fit on, so that fewest must be excused.
N_FEATURES = 3

TINY = dict(
    max_epochs=1,
    n_episodes=8,
    meta_batch_size=4,
    n_shots=2,
    n_queries=3,
    train_split=None,
    module__hidden_sizes=(8,),
    random_state=0,
)


def _classification_tasks(n_classes, n_tasks=6, n_features=N_FEATURES):
    return make_blob_tasks(
        n_tasks=n_tasks, n_classes=n_classes, n_rows_per_class=10, n_features=n_features,
        n_informative=2, random_state=0,
    )


def _regression_tasks(n_tasks=6, n_rows=20, n_features=N_FEATURES, random_state=0):
    """Linear tasks, each with its own weights."""
    rng = np.random.default_rng(random_state)
    tasks = []
    for i in range(n_tasks):
        X = rng.normal(size=(n_rows, n_features)).astype(np.float32)
        y = X @ rng.normal(size=n_features) + 0.1 * rng.normal(size=n_rows)
        tasks.append(Task(X, y.astype(np.float32), name=f"linear_{i}"))
    return TaskCollection(tasks)


def _meta_learners():
    """Meta-learners meta-trained on tiny tasks of N_FEATURES columns."""
    return {
        "protonet": ProtoNetClassifier(**TINY).fit(_classification_tasks(2)),
        "maml_classifier": MAMLClassifier(**TINY).fit(_classification_tasks(3)),
        "maml_regressor": MAMLRegressor(**TINY).fit(_regression_tasks()),
    }


META = _meta_learners()


def _new_task(kind, random_state=1):
    """A task none of the meta-learners saw, with 30 rows."""
    if kind == "maml_regressor":
        return _regression_tasks(n_tasks=1, n_rows=30, random_state=random_state)[0]
    n_classes = 3 if kind == "maml_classifier" else 2
    return make_blob_tasks(
        n_tasks=1, n_classes=n_classes, n_rows_per_class=10, n_features=N_FEATURES,
        random_state=random_state,
    )[0]


def _support_query(task, n_support=12):
    # blob rows come shuffled: the first rows hold every class
    return task.X[:n_support], task.y[:n_support], task.X[n_support:], task.y[n_support:]


def _module_state(meta):
    return {name: value.clone() for name, value in meta.module_.state_dict().items()}


def _modes(meta):
    return [module.training for module in meta.module_.modules()]


KINDS = list(META)


# ------------------------------------------------------------------ behaviour


@pytest.mark.parametrize("kind", KINDS)
def test_adapt_returns_a_fitted_sklearn_estimator(kind):
    meta = META[kind]
    X_support, y_support, X_query, y_query = _support_query(_new_task(kind))
    adapted = meta.adapt(X_support, y_support)

    assert isinstance(adapted.meta_learner, FrozenEstimator)
    assert adapted.meta_learner.estimator is meta
    assert adapted.n_features_in_ == N_FEATURES
    assert not hasattr(adapted, "feature_names_in_")
    y_pred = adapted.predict(X_query)
    assert y_pred.shape == y_query.shape
    if kind == "maml_regressor":
        assert isinstance(adapted, AdaptedRegressor) and is_regressor(adapted)
        assert adapted.score(X_query, y_query) == pytest.approx(r2_score(y_query, y_pred))
        return
    assert isinstance(adapted, AdaptedClassifier) and is_classifier(adapted)
    np.testing.assert_array_equal(adapted.classes_, np.unique(y_support))
    proba = adapted.predict_proba(X_query)
    assert proba.shape == (X_query.shape[0], adapted.classes_.shape[0])
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(adapted.classes_[proba.argmax(axis=1)], y_pred)
    assert adapted.score(X_query, y_query) == pytest.approx(accuracy_score(y_query, y_pred))


def test_labels_of_any_type_come_back_as_given():
    task = _new_task("protonet")
    labels = np.array(["no", "yes"])[task.y]
    adapted = META["protonet"].adapt(task.X[:12], labels[:12])
    np.testing.assert_array_equal(adapted.classes_, ["no", "yes"])
    assert set(adapted.predict(task.X[12:])) <= {"no", "yes"}


@pytest.mark.parametrize("kind", KINDS)
def test_meta_learner_predict_with_a_support_set_matches_adapt(kind):
    meta = META[kind]
    X_support, y_support, X_query, _ = _support_query(_new_task(kind))
    np.testing.assert_array_equal(
        meta.predict(X_query, X_support=X_support, y_support=y_support),
        meta.adapt(X_support, y_support).predict(X_query),
    )
    if kind != "maml_regressor":
        np.testing.assert_array_equal(
            meta.predict_proba(X_query, X_support=X_support, y_support=y_support),
            meta.adapt(X_support, y_support).predict_proba(X_query),
        )
    with pytest.raises(ValueError, match="pass X_support and y_support"):
        meta.predict(X_query)


@pytest.mark.parametrize("kind", KINDS)
def test_refit_adapts_again_from_the_same_start(kind):
    meta = META[kind]
    X_support, y_support, X_query, _ = _support_query(_new_task(kind))
    adapted = meta.adapt(X_support, y_support)
    first = adapted.predict(X_query)
    other = _new_task(kind, random_state=2)
    adapted.fit(other.X, other.y)  # another task in between
    assert not np.array_equal(adapted.predict(X_query), first)
    adapted.fit(X_support, y_support)
    np.testing.assert_array_equal(adapted.predict(X_query), first)


@pytest.mark.parametrize("kind", KINDS)
def test_adapting_leaves_the_meta_learner_alone(kind):
    meta = META[kind]
    state, modes = _module_state(meta), _modes(meta)
    history = meta.history_[:, "train_loss"]
    X_support, y_support, X_query, y_query = _support_query(_new_task(kind))
    adapted = meta.adapt(X_support, y_support)
    adapted.predict(X_query)
    adapted.score(X_query, y_query)
    clone(adapted).fit(X_support, y_support)
    after = _module_state(meta)
    assert after.keys() == state.keys()
    assert all(torch.equal(after[name], state[name]) for name in state)
    assert _modes(meta) == modes
    assert meta.history_[:, "train_loss"] == history


def test_adapting_leaves_the_training_mode_of_a_meta_learner_as_it_was():
    meta = ProtoNetClassifier(**{**TINY, "module__dropout": 0.5}).fit(_classification_tasks(2))
    X_support, y_support, X_query, _ = _support_query(_new_task("protonet"))
    for training in (True, False):
        meta.module_.train(training)
        adapted = meta.adapt(X_support, y_support)
        first = adapted.predict_proba(X_query)
        assert meta.module_.training is training
        # dropout is off when adapting and predicting, whatever the mode was
        np.testing.assert_array_equal(adapted.predict_proba(X_query), first)


@pytest.mark.parametrize("kind", KINDS)
def test_clone_keeps_the_meta_learner_fitted(kind):
    meta = META[kind]
    X_support, y_support, X_query, _ = _support_query(_new_task(kind))
    adapted = meta.adapt(X_support, y_support)
    cloned = clone(adapted)
    assert cloned.meta_learner.estimator is meta
    assert not hasattr(cloned, "state_")
    with pytest.raises(NotFittedError):
        cloned.predict(X_query)
    np.testing.assert_array_equal(cloned.fit(X_support, y_support).predict(X_query), adapted.predict(X_query))


@pytest.mark.parametrize("kind", KINDS)
def test_cross_val_score_on_a_new_task(kind):
    task = _new_task(kind)
    adapted = META[kind].adapt(task.X[:12], task.y[:12])
    scores = cross_val_score(adapted, task.X, task.y, cv=3)
    assert scores.shape == (3,)
    assert np.isfinite(scores).all()


@pytest.mark.parametrize("kind", KINDS)
def test_pickle_round_trip_of_an_adapted_estimator(kind):
    X_support, y_support, X_query, _ = _support_query(_new_task(kind))
    adapted = META[kind].adapt(X_support, y_support)
    loaded = pickle.loads(pickle.dumps(adapted))
    assert loaded.meta_learner.estimator is not META[kind]  # travels with it
    np.testing.assert_array_equal(loaded.predict(X_query), adapted.predict(X_query))
    if kind != "maml_regressor":
        np.testing.assert_array_equal(loaded.predict_proba(X_query), adapted.predict_proba(X_query))
    state = adapted.__getstate__()["state_"]  # the adapted state travels on the CPU
    tensors = state.values() if isinstance(state, dict) else [state]
    assert all(tensor.device.type == "cpu" for tensor in tensors)
    # and it can be adapted again after loading
    np.testing.assert_array_equal(loaded.fit(X_support, y_support).predict(X_query), adapted.predict(X_query))


# ----------------------------------------------------------- feature names


@pytest.fixture(scope="module")
def frame_meta():
    """A ProtoNet meta-trained on long-format DataFrames with a task column."""
    tasks = _classification_tasks(2)
    columns = [f"x{i}" for i in range(N_FEATURES)]
    df = pd.concat(
        [pd.DataFrame(task.X, columns=columns).assign(store=task.name) for task in tasks],
        ignore_index=True,
    )
    y = np.concatenate([task.y for task in tasks])
    return ProtoNetClassifier(**TINY, task_column="store").fit(df, y), columns


def test_feature_names_in_after_adapting_on_a_frame(frame_meta):
    meta, columns = frame_meta
    np.testing.assert_array_equal(meta.feature_names_in_, columns)
    task = _new_task("protonet")
    frame = pd.DataFrame(task.X, columns=columns).assign(store="new")  # the task column may stay
    adapted = meta.adapt(frame.iloc[:12], task.y[:12])
    np.testing.assert_array_equal(adapted.feature_names_in_, columns)
    assert adapted.n_features_in_ == N_FEATURES
    expected = adapted.predict(frame.iloc[12:])
    np.testing.assert_array_equal(adapted.predict(frame.iloc[12:].drop(columns="store")), expected)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        np.testing.assert_array_equal(adapted.predict(task.X[12:]), expected)
    with pytest.raises(ValueError, match="feature names"):
        adapted.predict(frame.iloc[12:, ::-1])


def test_support_frame_with_other_columns_is_refused(frame_meta):
    meta, columns = frame_meta
    task = _new_task("protonet")
    frame = pd.DataFrame(task.X, columns=["a", "b", "c"])
    with pytest.raises(ValueError, match="feature names"):
        meta.adapt(frame, task.y)


# ------------------------------------------------------------------- errors


def test_support_set_of_another_width_is_refused():
    task = _classification_tasks(2, n_tasks=1, n_features=N_FEATURES + 2)[0]
    message = r"X_support has 5 feature\(s\), but ProtoNetClassifier was meta-trained on 3"
    with pytest.raises(ValueError, match=message):
        META["protonet"].adapt(task.X, task.y)
    adapted = META["protonet"].adapt(*_support_query(_new_task("protonet"))[:2])
    with pytest.raises(ValueError, match="X has 5 features, but ProtoNetClassifier is expecting 3"):
        adapted.predict(task.X)


def test_support_set_with_one_class_is_refused():
    task = _new_task("protonet")
    with pytest.raises(ValueError, match=r"y_support has 1 class \(\[0\]\)"):
        META["protonet"].adapt(task.X[task.y == 0], task.y[task.y == 0])


def test_maml_support_set_must_have_n_ways_classes():
    task = _new_task("protonet")  # two classes; the MAMLClassifier is 3-way
    with pytest.raises(ValueError, match="meta-trained on 3-way tasks but this support set has 2 classes"):
        META["maml_classifier"].adapt(task.X, task.y)


@pytest.mark.parametrize("kind", KINDS)
def test_support_set_without_targets_is_refused(kind):
    adapted = META[kind].adapt(*_support_query(_new_task(kind))[:2])
    with pytest.raises(ValueError, match="requires y to be passed, but the target y is None"):
        adapted.fit(_new_task(kind).X, None)


def test_column_vector_targets_are_raveled_with_a_warning():
    task = _new_task("maml_regressor")
    with pytest.warns(DataConversionWarning):
        adapted = META["maml_regressor"].adapt(task.X, task.y[:, None])
    np.testing.assert_array_equal(
        adapted.predict(task.X), META["maml_regressor"].adapt(task.X, task.y).predict(task.X)
    )


def test_adapting_needs_a_meta_trained_learner():
    task = _new_task("protonet")
    with pytest.raises(NotFittedError):
        ProtoNetClassifier().adapt(task.X, task.y)
    with pytest.raises(NotFittedError):
        AdaptedClassifier(FrozenEstimator(ProtoNetClassifier())).fit(task.X, task.y)


def test_non_finite_support_rows_are_refused():
    task = _new_task("protonet")
    X = task.X.copy()
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match="X_support contains NaN in 1 row"):
        META["protonet"].adapt(X, task.y)


# ---------------------------------------------------------- estimator checks

WIDTH = (
    f"the backbone's input width is fixed at meta-training ({N_FEATURES} features); "
    "this check adapts on data of another width"
)
N_WAYS = (
    "MAMLClassifier's output layer has n_ways_=3 units, fixed at meta-training; this "
    "check adapts on a support set with another number of classes"
)
WIDTH_AND_N_WAYS = (
    f"MAMLClassifier fixes at meta-training both the input width ({N_FEATURES} features) "
    "and the output width (n_ways_=3 classes); this check adapts on data of another "
    "width and with another number of classes"
)
HASH = (
    "joblib.hash of a torch module depends on the memory addresses under which torch "
    "pickles its storages, so the deep copy this check hashes never matches the "
    "frozen meta-learner; test_adapting_leaves_the_meta_learner_alone checks instead "
    "that its weights and modes are unchanged (and this check adapts on 2 features)"
)

_EXCUSED_FOR_ALL = {
    "check_estimators_overwrite_params": HASH,
    "check_estimators_fit_returns_self": WIDTH,
    "check_readonly_memmap_input": WIDTH,
    "check_n_features_in_after_fitting": WIDTH,
    "check_positive_only_tag_during_fit": WIDTH,
    "check_estimators_dtypes": WIDTH,
    "check_dtype_object": WIDTH,
    "check_fit_idempotent": WIDTH,
    "check_fit_check_is_fitted": WIDTH,
    "check_n_features_in": WIDTH,
}
_EXCUSED_FOR_CLASSIFIERS = {
    **_EXCUSED_FOR_ALL,
    "check_classifier_data_not_an_array": WIDTH,
    "check_classifiers_classes": WIDTH,
    "check_classifiers_train": WIDTH,
}
EXPECTED_FAILED_CHECKS = {
    "protonet": _EXCUSED_FOR_CLASSIFIERS,
    "maml_classifier": {
        **_EXCUSED_FOR_CLASSIFIERS,
        **dict.fromkeys(
            [
                "check_estimators_dtypes",
                "check_dtype_object",
                "check_classifier_data_not_an_array",
                "check_classifiers_classes",
                "check_classifiers_train",
                "check_fit_idempotent",
                "check_fit_check_is_fitted",
                "check_n_features_in",
            ],
            WIDTH_AND_N_WAYS,
        ),
        "check_pipeline_consistency": N_WAYS,
        "check_estimators_nan_inf": N_WAYS,
        "check_estimators_pickle": N_WAYS,
        "check_fit2d_1feature": N_WAYS,
    },
    "maml_regressor": {
        **_EXCUSED_FOR_ALL,
        "check_regressors_train": WIDTH,
        "check_regressor_data_not_an_array": WIDTH,
        "check_regressors_no_decision_function": WIDTH,
        "check_regressors_int": WIDTH,
        "check_fit2d_1sample": WIDTH,
    },
}

_ADAPTED = {kind: META[kind].adapt(*_support_query(_new_task(kind))[:2]) for kind in KINDS}
_KIND_OF = {id(adapted.meta_learner.estimator): kind for kind, adapted in _ADAPTED.items()}


def _expected_failed_checks(estimator):
    return EXPECTED_FAILED_CHECKS[_KIND_OF[id(estimator.meta_learner.estimator)]]


@parametrize_with_checks(list(_ADAPTED.values()), expected_failed_checks=_expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # e.g. skorch on tiny data
        warnings.simplefilter("ignore", RuntimeWarning)  # sklearn casting the NaN targets it checks
        check(estimator)
