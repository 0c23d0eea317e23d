"""Bad input is refused at the public methods, with a message that says what to do.

Each case raises ValueError or TypeError (never a bare torch RuntimeError or
IndexError, never NaN output) from ``fit``, ``partial_fit``, ``adapt``,
``predict``, ``predict_proba``, ``score`` or ``transform``; and a fitted
estimator whose call failed predicts exactly as before.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

from skmeta import MAMLClassifier, MAMLRegressor, ProtoNetClassifier
from skmeta._validation import check_features
from skmeta.datasets import make_blob_tasks, make_sinusoid_tasks
from skmeta.tasks import Task, TaskCollection

CLASSIFIERS = [ProtoNetClassifier, MAMLClassifier]
ALL = [ProtoNetClassifier, MAMLClassifier, MAMLRegressor]


def _training_tasks(cls):
    if cls is MAMLRegressor:
        return make_sinusoid_tasks(6, n_rows=10, random_state=0)
    return make_blob_tasks(n_tasks=6, n_rows_per_class=10, n_features=4, random_state=0)


def _new_task(cls):
    """Support (3 rows per class) and query rows of a task unseen in fit."""
    if cls is MAMLRegressor:
        task = make_sinusoid_tasks(1, n_rows=12, random_state=1)[0]
        return task.X[:6], task.y[:6], task.X[6:]
    task = make_blob_tasks(n_tasks=1, n_rows_per_class=8, n_features=4, random_state=1)[0]
    support = np.concatenate([np.flatnonzero(task.y == c)[:3] for c in (0, 1)])
    query = np.setdiff1d(np.arange(task.n_rows), support)
    return task.X[support], task.y[support], task.X[query]


@pytest.fixture(scope="module", params=ALL, ids=lambda cls: cls.__name__)
def fitted(request, fast_params):
    """A meta-trained estimator of each kind, shared by the module's tests.

    Tests call it only in ways that must fail and must leave it as it was.
    """
    cls = request.param
    return cls(**fast_params).fit(_training_tasks(cls))


@pytest.fixture(scope="module")
def fitted_classifier(fast_params):
    return MAMLClassifier(**fast_params).fit(_training_tasks(MAMLClassifier))


def _outputs(meta):
    """What a fitted estimator predicts for the same new task, every time."""
    X_support, y_support, X_query = _new_task(type(meta))
    if meta._classification:
        out = meta.predict_proba(X_query, X_support, y_support)
    else:
        out = meta.predict(X_query, X_support, y_support)
    assert np.isfinite(out).all()
    return out


def assert_refused(meta, call, exception, match):
    """``call()`` raises ``exception`` matching ``match``; ``meta`` is unchanged."""
    before = _outputs(meta)
    with pytest.raises(exception, match=match) as info:
        call()
    assert isinstance(info.value, (ValueError, TypeError))
    np.testing.assert_array_equal(_outputs(meta), before)
    return info.value


def _with_row(tasks, index, task):
    items = list(tasks)
    items[index] = task
    return TaskCollection(items)


def _frame(X, prefix="f"):
    return pd.DataFrame(X, columns=[f"{prefix}{i}" for i in range(X.shape[1])])


# --------------------------------------------------------------- fit: tasks


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
@pytest.mark.parametrize("empty", [TaskCollection([]), []], ids=["collection", "list"])
def test_empty_collection(fitted, method, empty):
    assert_refused(fitted, lambda: getattr(fitted, method)(empty), ValueError,
                   "The task collection is empty; pass at least one task")


def _with_a_small_task(tasks, classification, n_small):
    """Task 2 keeps ``n_small`` rows of one class (or in all, for regression)."""
    small = tasks[2]
    first = small.y == small.y[0]
    keep = np.concatenate([np.flatnonzero(~first), np.flatnonzero(first)[:n_small]])
    if not classification:
        keep = np.arange(n_small)
    return _with_row(tasks, 2, Task(small.X[keep], small.y[keep], name=small.name))


@pytest.mark.parametrize("method", ["fit", "partial_fit", "score"])
def test_strict_episodes_refuse_a_task_smaller_than_an_episode(fitted, method):
    bad = _with_a_small_task(_training_tasks(type(fitted)), fitted._classification, 3)
    what = r"class \d+ of task 'blobs_2' has 3" if fitted._classification else "task 'sinusoid_2' has 3"
    fitted.set_params(strict_episodes=True)
    try:
        assert_refused(fitted, lambda: getattr(fitted, method)(bad), ValueError,
                       rf"1 of the 6 tasks cannot give an episode for .*{what} row\(s\) but an episode "
                       r"needs n_shots \+ n_queries = 5.* set strict_episodes=False")
    finally:
        fitted.set_params(strict_episodes=False)


@pytest.mark.parametrize("cls", ALL)
def test_a_task_with_few_rows_gives_smaller_episodes(cls, fast_params):
    bad = _with_a_small_task(_training_tasks(cls), cls._classification, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is left out: no warning
        meta = cls(**fast_params).fit(bad)
    assert meta.history_[-1, "train_loss"] == pytest.approx(meta.history_[-1, "train_loss"])
    assert np.isfinite(meta.history_[-1, "train_loss"])


@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_tasks_that_cannot_give_an_episode_are_left_out_with_one_warning(cls, fast_params):
    tasks = _training_tasks(cls)
    lonely = Task(tasks[0].X, np.zeros(tasks[0].n_rows, dtype=int), name="lonely")
    single = Task(tasks[1].X[:11], np.r_[np.zeros(10, dtype=int), 1], name="single_row")
    with pytest.warns(UserWarning, match=r"2 of 6 tasks cannot give an episode and are left out of "
                                         r"meta-training: task 'lonely' has 1 class.*class 1 of task "
                                         r"'single_row' has 1 row") as record:
        meta = cls(**fast_params).fit(_with_row(_with_row(tasks, 1, lonely), 3, single))
    # One warning, pointing at the line that called fit (not into skmeta or skorch).
    assert [w.filename for w in record if "cannot give an episode" in str(w.message)] == [__file__]
    with pytest.warns(UserWarning,
                      match=r"1 of 2 tasks cannot give an episode and are left out of scoring") as record:
        meta.score(TaskCollection([lonely, tasks[2]]))
    assert __file__ in [w.filename for w in record if "cannot give an episode" in str(w.message)]
    with pytest.raises(ValueError, match=r"None of the 1 tasks can give an episode for meta-training: "
                                         r"task 'lonely' has 1 class\(es\) \[0\] but episodes need 3 "
                                         r"\(n_ways=3\)"):
        cls(**{**fast_params, "n_ways": 3}).fit(TaskCollection([lonely]))


@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_tasks_with_different_numbers_of_classes_need_n_ways(cls, fast_params):
    tasks = make_blob_tasks(n_tasks=2, n_classes=3, n_rows_per_class=6, n_features=4, random_state=0)
    mixed = TaskCollection(list(_training_tasks(cls)[:2]) + list(tasks))
    assert mixed.names == ["blobs_0", "blobs_1"] * 2  # names may repeat; the check must not rely on them
    with pytest.raises(ValueError, match=r"Tasks have different numbers of classes \('blobs_0': 2, "
                                         r"'blobs_1': 2, 'blobs_0': 3, 'blobs_1': 3\);.* Set n_ways"):
        cls(**fast_params).fit(mixed)
    cls(**{**fast_params, "n_ways": 2}).fit(mixed)  # the fix the message gives works


@pytest.mark.parametrize("method", ["fit", "partial_fit", "score"])
def test_tasks_with_different_feature_counts_name_the_task(fitted, method):
    tasks = _training_tasks(type(fitted))
    odd = tasks[3]
    bad = _with_row(tasks, 3, Task(np.hstack([odd.X, odd.X]), odd.y, name="odd_one"))
    n = tasks[0].X.shape[1]
    assert_refused(fitted, lambda: getattr(fitted, method)(bad), ValueError,
                   rf"Task 'odd_one' has {2 * n} features but task '\w+_0' has {n}; all tasks must share")


@pytest.mark.parametrize("method", ["partial_fit", "score"])
def test_tasks_of_another_width_than_fit(fitted, method):
    tasks = _training_tasks(type(fitted))
    wide = TaskCollection(Task(np.hstack([t.X, t.X]), t.y, name=t.name) for t in tasks)
    n = tasks[0].X.shape[1]
    assert_refused(fitted, lambda: getattr(fitted, method)(wide), ValueError,
                   rf"The tasks have {2 * n} features, but {type(fitted).__name__} was meta-trained on {n}")


@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("method", ["fit", "partial_fit", "score"])
def test_nan_or_inf_in_task_features(fitted, method, value):
    tasks = _training_tasks(type(fitted))
    X = tasks[4].X.copy()
    X[3, 0] = value
    bad = _with_row(tasks, 4, Task(X, tasks[4].y, name=tasks[4].name))
    kind = "NaN" if np.isnan(value) else "infinity"
    assert_refused(fitted, lambda: getattr(fitted, method)(bad), ValueError,
                   rf"X of task '\w+_4' contains {kind} in 1 row\(s\), the first at row 3; impute or drop"
                   r" them first, e.g. with sklearn.impute.SimpleImputer")


def test_nan_in_regression_targets(fast_params):
    tasks = _training_tasks(MAMLRegressor)
    y = tasks[1].y.copy()
    y[0] = np.nan
    with pytest.raises(ValueError, match=r"y of task 'sinusoid_1' has missing targets "
                                         r"\(NaN, None or NA\) in 1 of 10 rows"):
        MAMLRegressor(**fast_params).fit(_with_row(tasks, 1, Task(tasks[1].X, y, name="sinusoid_1")))


def test_regression_targets_must_be_numbers(fast_params):
    tasks = _training_tasks(MAMLRegressor)
    words = np.array(["a", "b"] * 5)
    with pytest.raises(ValueError, match="y of task 'words' must hold numbers for regression"):
        MAMLRegressor(**fast_params).fit(_with_row(tasks, 0, Task(tasks[0].X, words, name="words")))


@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_continuous_targets_for_a_classifier(cls, fast_params):
    tasks = _training_tasks(cls)
    y = tasks[2].y + 0.5
    with pytest.raises(ValueError, match="y of task 'blobs_2' holds continuous values, not class labels; "
                                         "pass labels, or use a regressor such as MAMLRegressor"):
        cls(**fast_params).fit(_with_row(tasks, 2, Task(tasks[2].X, y, name="blobs_2")))


@pytest.mark.parametrize("cls", CLASSIFIERS)
@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
def test_nan_class_labels(cls, fast_params):
    tasks = _training_tasks(cls)
    y = tasks[1].y.astype(float)
    y[4] = np.nan
    with pytest.raises(ValueError, match=r"y of task 'blobs_1' has missing labels \(NaN, None or NA\) "
                                         r"in 1 of 20 rows"):
        cls(**fast_params).fit(_with_row(tasks, 1, Task(tasks[1].X, y, name="blobs_1")))


def test_partial_fit_on_tasks_of_other_ways(fitted_classifier):
    meta = fitted_classifier
    tasks = make_blob_tasks(n_tasks=2, n_classes=3, n_rows_per_class=6, n_features=4, random_state=0)
    assert_refused(meta, lambda: meta.partial_fit(tasks), ValueError,
                   "These tasks give 3-way episodes but the model was meta-trained on 2-way ones; "
                   "set n_ways=2")


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
@pytest.mark.parametrize("param, value", [("n_shots", 0), ("n_ways", 1), ("meta_batch_size", 0),
                                          ("n_episodes", 2.5), ("lr", -1.0)])
def test_invalid_hyperparameters_are_named(fitted, method, param, value):
    if param not in fitted.get_params(deep=False):
        pytest.skip(f"{type(fitted).__name__} does not take {param} "
                    "(test_group_tables.py::test_arguments_without_a_meaning_are_refused)")
    valid = fitted.get_params()[param]
    before = _outputs(fitted)
    fitted.set_params(**{param: value})
    try:
        name = type(fitted).__name__
        with pytest.raises(InvalidParameterError,
                           match=rf"The '{param}' parameter of {name} must be .* Got {value!r} instead"):
            getattr(fitted, method)(_training_tasks(type(fitted)))
    finally:
        fitted.set_params(**{param: valid})
    np.testing.assert_array_equal(_outputs(fitted), before)


@pytest.mark.parametrize("method", ["adapt", "predict", "score"])
@pytest.mark.parametrize("param, value", [("n_shots", 0), ("meta_batch_size", 0), ("lr", -1.0)])
def test_parameters_changed_after_fit_are_checked_again(fitted, method, param, value):
    X_support, y_support, X_query = _new_task(type(fitted))
    calls = {"adapt": lambda: fitted.adapt(X_support, y_support),
             "predict": lambda: fitted.predict(X_query, X_support, y_support),
             "score": lambda: fitted.score(_training_tasks(type(fitted)))}
    valid = fitted.get_params()[param]
    before = _outputs(fitted)
    fitted.set_params(**{param: value})
    try:
        with pytest.raises(InvalidParameterError, match=rf"The '{param}' parameter"):
            calls[method]()
    finally:
        fitted.set_params(**{param: valid})
    np.testing.assert_array_equal(_outputs(fitted), before)


@pytest.mark.parametrize("as_list", [False, True], ids=["collection", "list"])
def test_y_beside_tasks_is_refused(fitted, as_list):
    tasks = _training_tasks(type(fitted))
    X = list(tasks) if as_list else tasks
    y = np.zeros(len(tasks))
    kind = "list" if as_list else "TaskCollection"
    match = rf"y must be None when X is a {kind} of tasks: each task holds its own targets"
    assert_refused(fitted, lambda: fitted.fit(X, y), ValueError, match)
    assert_refused(fitted, lambda: fitted.score(X, y), ValueError, match)


@pytest.mark.parametrize("method", ["fit", "score"])
def test_non_numeric_columns_point_to_column_transformer(fitted, method):
    tasks = _training_tasks(type(fitted))
    frames = [_frame(t.X).assign(colour=np.where(np.arange(t.n_rows) % 2, "red", "blue")) for t in tasks]
    bad = TaskCollection(Task(f, t.y, name=t.name) for f, t in zip(frames, tasks, strict=True))
    assert_refused(fitted, lambda: getattr(fitted, method)(bad), ValueError,
                   r"X of task '\w+_0' has non-numeric columns \['colour'\]; .*"
                   r"sklearn.compose.ColumnTransformer and sklearn.preprocessing.OneHotEncoder")


def test_non_numeric_array_points_to_column_transformer(fast_params):
    X = np.array([["1.0", "red"], ["2.0", "blue"]] * 5, dtype=object)
    tasks = TaskCollection([(X, [0, 1] * 5), (X, [1, 0] * 5)])
    with pytest.raises(ValueError, match="X of task 0 has non-numeric values; .*OneHotEncoder"):
        ProtoNetClassifier(**fast_params).fit(tasks)


def test_fit_takes_tasks_not_arrays(fitted):
    X_support, y_support, _ = _new_task(type(fitted))
    assert_refused(fitted, lambda: fitted.fit(X_support, y_support), TypeError,
                   "Expected a TaskCollection, a list of tasks, or a DataFrame X with task_column and y; "
                   r"got ndarray \(task_column is None\). Build one with TaskCollection.from_frame")


# ---------------------------------------------------------- long format


def _long_format(cls):
    tasks = _training_tasks(cls)
    X = pd.concat([_frame(t.X).assign(shop=t.name) for t in tasks], ignore_index=True)
    return X, np.concatenate([t.y for t in tasks])


@pytest.mark.parametrize("cls", ALL)
def test_task_column_missing_from_long_format(cls, fast_params):
    X, y = _long_format(cls)
    meta = cls(**{**fast_params, "task_column": "store"})
    with pytest.raises(ValueError, match=r"task_column='store' is not a column of X \(columns: \['f0',"):
        meta.fit(X, y)
    with pytest.raises(ValueError, match="X is a DataFrame but task_column is None; set task_column"):
        cls(**fast_params).fit(X, y)
    with pytest.raises(ValueError, match="Long-format input needs y"):
        cls(**{**fast_params, "task_column": "shop"}).fit(X)
    meta.set_params(task_column="shop").fit(X, y)  # the fix works; predict drops the column
    X_support, y_support, X_query = _new_task(cls)
    out = meta.predict(_frame(X_query).assign(shop="new"), _frame(X_support).assign(shop="new"), y_support)
    np.testing.assert_array_equal(out, meta.predict(_frame(X_query), _frame(X_support), y_support))


def test_task_column_missing_when_fitted(fitted):
    X, y = _long_format(type(fitted))
    fitted.set_params(task_column="store")
    try:
        assert_refused(fitted, lambda: fitted.fit(X, y), ValueError, "task_column='store' is not a column")
        assert_refused(fitted, lambda: fitted.score(X, y), ValueError, "task_column='store' is not a column")
    finally:
        fitted.set_params(task_column=None)


# ------------------------------------------------------ adapt and predict


def _bad_value(X, value):
    X = np.array(X, dtype=np.float64)
    X[1, 0] = value
    return X


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_nan_or_inf_in_the_support_set(fitted, value):
    X_support, y_support, X_query = _new_task(type(fitted))
    bad = _bad_value(X_support, value)
    kind = "NaN" if np.isnan(value) else "infinity"
    match = rf"X_support contains {kind} in 1 row\(s\), the first at row 1; impute or drop"
    assert_refused(fitted, lambda: fitted.adapt(bad, y_support), ValueError, match)
    assert_refused(fitted, lambda: fitted.predict(X_query, bad, y_support), ValueError, match)


@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "inf"])
def test_nan_or_inf_in_query_rows(fitted, value):
    X_support, y_support, X_query = _new_task(type(fitted))
    bad = _bad_value(X_query, value)
    kind = "NaN" if np.isnan(value) else "infinity"
    match = rf"^X contains {kind} in 1 row\(s\), the first at row 1; impute or drop"
    adapted = fitted.adapt(X_support, y_support)
    before = adapted.predict(X_query)
    assert_refused(fitted, lambda: fitted.predict(bad, X_support, y_support), ValueError, match)
    assert_refused(fitted, lambda: adapted.predict(bad), ValueError, match)
    if fitted._classification:
        assert_refused(fitted, lambda: fitted.predict_proba(bad, X_support, y_support), ValueError, match)
        assert_refused(fitted, lambda: adapted.predict_proba(bad), ValueError, match)
    if hasattr(fitted, "transform"):
        assert_refused(fitted, lambda: fitted.transform(bad), ValueError, match)
    np.testing.assert_array_equal(adapted.predict(X_query), before)


def test_nan_in_support_targets_of_a_regressor(fitted):
    if fitted._classification:
        pytest.skip("classes may be any label")
    X_support, y_support, _ = _new_task(MAMLRegressor)
    y = y_support.copy()
    y[2] = np.nan
    assert_refused(fitted, lambda: fitted.adapt(X_support, y), ValueError,
                   r"y_support has missing targets \(NaN, None or NA\) in 1 of 6 rows")


@pytest.mark.filterwarnings("ignore:X has feature names:UserWarning")
def test_non_numeric_support_or_query_columns(fitted):
    X_support, y_support, X_query = _new_task(type(fitted))
    support = _frame(X_support).assign(colour="red")
    query = _frame(X_query).assign(colour="red")
    assert_refused(fitted, lambda: fitted.adapt(support, y_support), ValueError,
                   r"X_support has non-numeric columns \['colour'\].*ColumnTransformer.*OneHotEncoder")
    assert_refused(fitted, lambda: fitted.predict(query, X_support, y_support), ValueError,
                   r"X has non-numeric columns \['colour'\].*ColumnTransformer.*OneHotEncoder")


def test_query_with_the_wrong_number_of_features(fitted):
    X_support, y_support, X_query = _new_task(type(fitted))
    wide = np.hstack([X_query, X_query])
    n, name = X_query.shape[1], type(fitted).__name__
    match = rf"X has {2 * n} features, but {name} is expecting {n} features as input"
    adapted = fitted.adapt(X_support, y_support)
    assert_refused(fitted, lambda: fitted.predict(wide, X_support, y_support), ValueError, match)
    assert_refused(fitted, lambda: adapted.predict(wide), ValueError, match)
    assert_refused(fitted, lambda: adapted.score(wide, np.zeros(wide.shape[0])), ValueError, match)
    if hasattr(fitted, "transform"):
        assert_refused(fitted, lambda: fitted.transform(wide), ValueError, match)
    assert_refused(fitted, lambda: fitted.adapt(np.hstack([X_support, X_support]), y_support), ValueError,
                   rf"X_support has {2 * n} feature\(s\), but {name} was meta-trained on {n}; .* pass the "
                   "columns it was meta-trained on")


def test_support_set_with_mismatched_lengths(fitted):
    X_support, y_support, _ = _new_task(type(fitted))
    assert_refused(fitted, lambda: fitted.adapt(X_support, y_support[:-1]), ValueError,
                   r"Found input variables with inconsistent numbers of samples: \[6, 5\]")


@pytest.mark.parametrize("X_bad", [np.zeros(4), np.zeros((0, 4))], ids=["1d", "empty"])
def test_query_that_is_not_a_table_of_rows(fitted, X_bad):
    X_support, y_support, _ = _new_task(type(fitted))
    assert_refused(fitted, lambda: fitted.predict(X_bad, X_support, y_support), ValueError,
                   "Expected 2D array|Found array with 0 sample")


def test_support_set_with_one_class(fitted):
    if not fitted._classification:
        pytest.skip("regression has no classes")
    X_support, y_support, _ = _new_task(type(fitted))
    one = y_support == y_support[0]
    assert_refused(fitted, lambda: fitted.adapt(X_support[one], y_support[one]), ValueError,
                   r"y_support has 1 class \(\[0\]\); a support set needs at least 2 classes")


@pytest.mark.parametrize("n_classes", [3, 4])
def test_maml_support_set_with_other_classes_than_n_ways(fitted_classifier, n_classes):
    meta = fitted_classifier
    assert meta.n_ways_ == 2
    task = make_blob_tasks(n_tasks=1, n_classes=n_classes, n_rows_per_class=6, n_features=4,
                           random_state=2)[0]
    match = (rf"MAMLClassifier was meta-trained on 2-way tasks but this support set has {n_classes} "
             rf"classes; pass a support set with exactly 2 classes, or refit with n_ways={n_classes}")
    assert_refused(meta, lambda: meta.adapt(task.X, task.y), ValueError, match)
    assert_refused(meta, lambda: meta.predict(task.X, task.X, task.y), ValueError, match)
    assert_refused(meta, lambda: meta.predict_proba(task.X, task.X, task.y), ValueError, match)
    assert_refused(meta, lambda: meta.score(TaskCollection([task])), ValueError, "meta-trained on 2-way")
    adapted = meta.adapt(*_new_task(MAMLClassifier)[:2])
    assert_refused(meta, lambda: adapted.fit(task.X, task.y), ValueError, match)


def test_protonet_adapts_to_any_number_of_classes(fast_params):
    meta = ProtoNetClassifier(**fast_params).fit(_training_tasks(ProtoNetClassifier))
    task = make_blob_tasks(n_tasks=1, n_classes=4, n_rows_per_class=6, n_features=4, random_state=2)[0]
    assert meta.adapt(task.X, task.y).predict_proba(task.X).shape == (24, 4)


def test_a_regressor_has_no_predict_proba(fitted):
    # skorch's NeuralNet.predict_proba would run the backbone on raw input.
    if fitted._classification:
        pytest.skip("classifiers have predict_proba")
    assert not hasattr(fitted, "predict_proba")
    with pytest.raises(AttributeError, match="has no attribute 'predict_proba'"):
        fitted.predict_proba(_new_task(MAMLRegressor)[2])


@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_predict_without_a_support_set(fitted, method):
    if not hasattr(fitted, method):
        pytest.skip(f"{type(fitted).__name__} has no {method}")
    X_support, y_support, X_query = _new_task(type(fitted))
    match = (rf"{type(fitted).__name__} predicts for a task from its support set: pass X_support and "
             r"y_support, or call adapt\(X_support, y_support\)")
    assert_refused(fitted, lambda: getattr(fitted, method)(X_query), ValueError, match)
    assert_refused(fitted, lambda: getattr(fitted, method)(X_query, X_support), ValueError, match)


def test_float32_dataframes_predict_without_warnings(fast_params):
    # pandas hands out read-only float32 views; torch warns on those unless copied.
    tasks = _training_tasks(ProtoNetClassifier)
    frames = TaskCollection(Task(_frame(t.X), t.y, name=t.name) for t in tasks)
    X_support, y_support, X_query = _new_task(ProtoNetClassifier)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        meta = ProtoNetClassifier(**fast_params).fit(frames)
        proba = meta.predict_proba(_frame(X_query), _frame(X_support), y_support)
    assert proba.shape == (X_query.shape[0], 2) and np.isfinite(proba).all()
    # torch warns once per process, so check the cause too.
    assert check_features(_frame(X_query.astype(np.float32))).flags.writeable


# ------------------------------------------------------------ not fitted


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("call", ["adapt", "predict", "predict without support", "predict_proba",
                                  "score", "transform"])
def test_methods_before_fit_raise_not_fitted(cls, fast_params, call):
    meta = cls(**fast_params)
    if not hasattr(meta, call.split()[0]):
        pytest.skip(f"{cls.__name__} has no {call}")
    X_support, y_support, X_query = _new_task(cls)
    calls = {
        "adapt": lambda: meta.adapt(X_support, y_support),
        "predict": lambda: meta.predict(X_query, X_support, y_support),
        "predict without support": lambda: meta.predict(X_query),
        "predict_proba": lambda: meta.predict_proba(X_query, X_support, y_support),
        "score": lambda: meta.score(_training_tasks(cls)),
        "transform": lambda: meta.transform(X_query),
    }
    with pytest.raises(NotFittedError, match=f"This {cls.__name__} instance is not fitted yet") as info:
        calls[call]()
    assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------- device


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("device", ["gpu", "cuda:0:1", 0])
def test_unknown_device(cls, fast_params, device):
    with pytest.raises(InvalidParameterError, match=rf"The 'device' parameter of {cls.__name__} must be .*"
                                                    rf"Got {device!r} instead"):
        cls(**{**fast_params, "device": device}).fit(_training_tasks(cls))


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("device", ["cuda", torch.device("cuda")], ids=["str", "torch.device"])
def test_cuda_without_cuda(fitted, device):
    match = "but CUDA is not available on this machine; use device='auto' or device='cpu'"
    unfitted = clone(fitted).set_params(device=device)
    with pytest.raises(ValueError, match=match):
        unfitted.fit(_training_tasks(type(fitted)))
    with pytest.raises(NotFittedError):  # the failed fit left nothing half-fitted behind
        unfitted.adapt(*_new_task(type(fitted))[:2])

    # On a fitted estimator, a failed refit (here on tasks of another width)
    # keeps the fitted state whole.
    tasks = _training_tasks(type(fitted))
    other = TaskCollection(Task(np.hstack([t.X, t.X]), t.y, name=t.name) for t in tasks)
    fitted.set_params(device=device)
    try:
        assert_refused(fitted, lambda: fitted.fit(other), ValueError, match)
    finally:
        fitted.set_params(device="cpu")


def test_labels_of_mixed_types_are_a_clear_type_error(fitted):
    if not fitted._classification:
        pytest.skip("regression targets are numbers")
    X_support, y_support, _ = _new_task(type(fitted))
    mixed = np.array(["one" if label == y_support[0] else 0 for label in y_support], dtype=object)
    assert_refused(fitted, lambda: fitted.adapt(X_support, mixed), TypeError,
                   r"y_support mixes label types \(int, str\) that cannot be sorted together")
