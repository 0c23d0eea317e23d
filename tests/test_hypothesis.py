"""Property-based tests: whatever the input, a success or a clean refusal.

Over generated shapes, dtypes (int, float, bool, object, str columns,
DataFrames) and values (NaN, infinity, huge, tiny), the public entry points
(:class:`~skmeta.tasks.Task`, ``TaskCollection.from_arrays`` and
``from_frame``, :meth:`EpisodeSampler.sample`, and every learner's ``fit``,
``adapt`` and ``predict``) either succeed with a well-formed result or raise
a ValueError or TypeError of their own: never an IndexError, KeyError,
RuntimeError or AttributeError, never an error that escaped from numpy,
pandas or torch, never NaN output. A fitted learner that refused a call
predicts exactly as before.

The examples are derandomized, so CI runs the same ones every time.
"""

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from _tiny import LEARNERS, outputs, reference_outputs, tiny_params
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from skmeta.datasets import make_blob_tasks, make_sinusoid_tasks
from skmeta.tasks import EpisodeSampler, Task, TaskCollection


def _settings(max_examples, shrink=True):
    """Deterministic settings; ``shrink=False`` bounds the time a failure takes
    where each example fits or adapts a learner (the failing example is then
    reported as generated)."""
    phases = list(Phase) if shrink else [Phase.explicit, Phase.reuse, Phase.generate]
    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                    phases=phases, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


#: Messages of errors that escaped from numpy, pandas, python or torch
#: internals instead of being raised on purpose with a message that helps.
INTERNAL = re.compile("|".join([
    r"need at least one array to concatenate",
    r"zero-size array",
    r"could not broadcast",
    r"operands could not be broadcast",
    r"cannot reshape array",
    r"setting an array element with a sequence",
    r"not supported between instances of",
    r"unhashable type",
    r"object cannot be interpreted as an integer",
    r"out of bounds for axis",
    r"tuple index out of range",
    r"Trying to create tensor",
    r"mat1 and mat2",
    r"size mismatch",
    r"boolean value of NA is ambiguous",
    r"could not convert string to float",
    r"invalid literal for int",
    r"must be real number, not",
    r"only integer scalar arrays",
    r"truth value of an array",
    r"^(nan|inf|-inf)$",
]))


def assert_clean(error):
    """``error`` is a ValueError or TypeError raised on purpose."""
    assert isinstance(error, (ValueError, TypeError)), f"{type(error).__name__}: {error}"
    message = str(error)
    assert not INTERNAL.search(message), f"{type(error).__name__} from internals: {message}"
    assert len(message) >= 20, f"{type(error).__name__} with too short a message: {message!r}"


def attempt(call):
    """``(result, None)``, or ``(None, error)`` for a clean error; fails otherwise."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            result = call()
    except Exception as error:  # noqa: BLE001 - every exception is judged here
        assert_clean(error)
        event(f"{getattr(call, '__name__', 'call')}: {type(error).__name__}")
        return None, error
    event(f"{getattr(call, '__name__', 'call')}: success")
    return result, None


# ---------------------------------------------------------------------- strategies

#: Values that break naive code: NaN, infinities, beyond float32, subnormal, huge.
SPECIAL = [np.nan, np.inf, -np.inf, 1e39, -1e39, 3e38, 1e30, 1e20, 1e-30, 5e-324, -0.0, 0.0]

FEATURE_KINDS = ["float64", "float32", "int64", "bool", "object", "str", "words", "frame", "frame+words"]
CLEAN_FEATURE_KINDS = ["float64", "float32", "int64", "frame"]


@st.composite
def feature_tables(draw, n_rows, n_features, kinds=FEATURE_KINDS, clean=False):
    """A table of ``n_rows`` x ``n_features`` as an array or DataFrame of some kind.

    ``clean`` tables are numbers of moderate size, so that a learner can use them.
    """
    kind = draw(st.sampled_from(CLEAN_FEATURE_KINDS if clean else kinds))
    values = draw(hnp.arrays(np.float64, (n_rows, n_features), elements=st.floats(-5, 5, width=32)))
    if n_rows * n_features and not clean:
        specials = draw(st.lists(st.tuples(st.integers(0, n_rows * n_features - 1), st.sampled_from(SPECIAL)),
                                 max_size=2))
        flat = values.ravel()
        for index, special in specials:
            flat[index] = special
    with np.errstate(all="ignore"):
        if kind == "float64":
            return values
        if kind == "float32":
            return values.astype(np.float32)
        if kind == "int64":
            return np.nan_to_num(values, posinf=2**62, neginf=-(2**62)).clip(-(2**62), 2**62).astype(np.int64)
        if kind == "bool":
            return values > 0
        if kind == "object":
            return values.astype(object)
        if kind == "str":
            return values.astype(str)
        if kind == "words":
            return np.where(values > 0, "red", "blue")
        frame = pd.DataFrame(values, columns=[f"f{j}" for j in range(n_features)])
        if kind == "frame+words" and n_features:
            frame["f0"] = np.where(values[:, 0] > 0, "red", "blue")
        return frame


@st.composite
def class_labels(draw, n_rows, n_classes=2, clean=False):
    """Labels of ``n_rows`` rows: ``n_classes`` balanced classes, or (unless
    ``clean``) broken ones: missing, continuous, mixed types, one class..."""
    codes = np.arange(n_rows) % n_classes
    codes = draw(st.permutations(codes.tolist())) if n_rows else []
    codes = np.asarray(codes, dtype=np.int64)
    clean_kinds = ["int", "str", "float", "bool"]
    broken_kinds = ["object-none", "float-nan", "huge-float", "continuous", "mixed-int-str", "one-class",
                    "three-classes"]
    kind = draw(st.sampled_from(clean_kinds if clean else clean_kinds + broken_kinds))
    if kind == "int":
        return codes
    if kind == "str":
        return np.array(["no", "yes"])[codes % 2] if n_rows else np.array([], dtype=str)
    if kind == "float":
        return codes.astype(float)
    if kind == "bool":
        return codes.astype(bool)
    if kind == "object-none":
        labels = np.array(["no", "yes"], dtype=object)[codes % 2] if n_rows else np.array([], dtype=object)
        labels[: min(1, n_rows)] = None
        return labels
    if kind == "float-nan":
        labels = codes.astype(float)
        labels[: min(1, n_rows)] = np.nan
        return labels
    if kind == "huge-float":
        return np.where(codes == 0, 0.0, 1e30)
    if kind == "continuous":
        return codes + draw(hnp.arrays(np.float64, n_rows, elements=st.floats(0.01, 0.99)))
    if kind == "mixed-int-str":
        return np.array([0 if c == 0 else "one" for c in codes], dtype=object)
    if kind == "one-class":
        return np.zeros(n_rows, dtype=np.int64)
    return np.arange(n_rows) % 3


@st.composite
def regression_targets(draw, n_rows, clean=False):
    values = draw(hnp.arrays(np.float64, n_rows, elements=st.floats(-5, 5, width=32)))
    clean_kinds = ["float", "int"]
    kind = draw(st.sampled_from(clean_kinds if clean else clean_kinds + ["special", "str", "object", "bool"]))
    if kind == "int":
        return values.round().astype(np.int64)
    if kind == "special" and n_rows:
        values[draw(st.integers(0, n_rows - 1))] = draw(st.sampled_from(SPECIAL))
    if kind == "str":
        return values.astype(str)
    if kind == "object":
        labels = values.astype(object)
        labels[: min(1, n_rows)] = None
        return labels
    if kind == "bool":
        return values > 0
    return values


def targets(classification, n_rows, clean=False):
    if classification:
        return class_labels(n_rows, clean=clean)
    return regression_targets(n_rows, clean=clean)


# -------------------------------------------------------------- task construction


@st.composite
def task_inputs(draw):
    ndim = draw(st.sampled_from([0, 1, 2, 2, 2, 3]))
    n_rows = draw(st.integers(0, 6))
    y_rows = draw(st.sampled_from([n_rows, n_rows, n_rows, n_rows + 1, max(n_rows - 1, 0)]))
    if ndim == 2:
        X = draw(feature_tables(n_rows, draw(st.integers(0, 3))))
    else:
        shape = {0: (), 1: (n_rows,), 3: (n_rows, 2, 2)}[ndim]
        X = draw(hnp.arrays(np.float64, shape, elements=st.floats(allow_nan=True, allow_infinity=True)))
    y_shape = draw(st.sampled_from([(y_rows,), (y_rows,), (y_rows, 1), ()]))
    y = np.resize(draw(class_labels(y_rows)), y_shape) if y_shape else np.asarray(1)
    return X, y


@_settings(120)
@given(task_inputs())
def test_task_construction(inputs):
    X, y = inputs
    task, error = attempt(lambda: Task(X, y, name="t"))
    if error is None:
        assert task.n_rows == np.asarray(y).shape[0] == len(X)
        assert task.name == "t"


#: Task ids: ints, strings, both in one column, non-integral floats, bools;
#: some with a missing id (NaN, None, pd.NA).
GROUP_KINDS = ["int", "str", "mixed", "float", "bool", "float-nan", "object-none", "object-NA",
               "Int64-NA", "string-NA"]


@st.composite
def group_arrays(draw, n_rows):
    codes = np.asarray(draw(st.lists(st.integers(0, 2), min_size=n_rows, max_size=n_rows)), dtype=np.int64)
    kind = draw(st.sampled_from(GROUP_KINDS))
    missing = draw(st.lists(st.integers(0, max(n_rows - 1, 0)), max_size=2)) if n_rows else []
    if kind == "int":
        return codes
    if kind == "str":
        return np.array(["a", "b", "c"])[codes]
    if kind == "mixed":
        return np.array([0, "b", 2], dtype=object)[codes]
    if kind == "float":
        return np.array([0.5, 1.5, 2.5])[codes]
    if kind == "bool":
        return codes % 2 == 0
    if kind == "float-nan":
        groups = np.array([0.5, 1.5, 2.5])[codes]
        groups[missing] = np.nan
        return groups
    if kind in ("object-none", "object-NA"):
        groups = np.array(["a", 1, "c"], dtype=object)[codes]
        groups[missing] = None if kind == "object-none" else pd.NA
        return groups
    if kind == "Int64-NA":
        groups = pd.array(codes.tolist(), dtype="Int64")
        groups[missing] = pd.NA
        return groups
    groups = pd.array(np.array(["a", "b", "c"])[codes].tolist(), dtype="string")
    groups[missing] = pd.NA
    return groups


@st.composite
def long_tables(draw):
    n_rows = draw(st.integers(0, 10))
    X = draw(feature_tables(n_rows, draw(st.integers(1, 3)), kinds=["float64", "int64", "object", "frame"]))
    groups = draw(group_arrays(n_rows))
    shape = draw(st.sampled_from(["1-d", "1-d", "1-d", "2-d", "short"]))
    if shape == "2-d":
        groups = np.stack([np.asarray(groups, dtype=object)] * 2, axis=1)
    elif shape == "short" and n_rows:
        groups = groups[:-1]
    return X, groups


def _plain(value):
    """A numpy scalar as the Python one (``np.int64(1)`` as ``1``)."""
    return value.item() if isinstance(value, np.generic) else value


def _assert_partition(tasks, X, groups, n_rows):
    """Tasks hold every row once, each row in the task of its own id."""
    rows = [np.asarray(task.y, dtype=np.int64) for task in tasks]  # y is the row number
    every = np.sort(np.concatenate(rows)) if rows else np.array([], dtype=np.int64)
    np.testing.assert_array_equal(every, np.arange(n_rows))
    assert len({repr(name) for name in tasks.names}) == len(tasks), tasks.names
    values = [_plain(value) for value in groups]
    for task, task_rows in zip(tasks, rows, strict=True):
        for row in task_rows:
            # The id as given: 1 stays the int 1, "b" the string "b".
            assert type(values[row]) is type(task.name) and values[row] == task.name, (values[row], task.name)
        expected = X.iloc[task_rows] if hasattr(X, "iloc") else np.asarray(X)[task_rows]
        np.testing.assert_array_equal(np.asarray(task.X), np.asarray(expected))


@_settings(120)
@given(long_tables())
def test_task_collection_from_arrays_and_from_frame(table):
    X, groups = table
    n_rows = len(X)
    y = np.arange(n_rows)
    from_arrays, error = attempt(lambda: TaskCollection.from_arrays(X, y, groups))
    if error is None:
        _assert_partition(from_arrays, X, groups, n_rows)
    if np.ndim(groups) != 1 or len(groups) != n_rows:
        return
    frame = pd.DataFrame(np.asarray(X)).add_prefix("f")
    frame["task"] = groups
    frame["target"] = y
    from_frame, frame_error = attempt(lambda: TaskCollection.from_frame(frame, task="task", target="target"))
    # The two paths agree: both refuse, or both give the same tasks.
    assert (error is None) == (frame_error is None), (error, frame_error)
    if error is None:
        assert sorted(map(repr, from_frame.names)) == sorted(map(repr, from_arrays.names))
        _assert_partition(from_frame, frame.drop(columns=["task", "target"]), groups, n_rows)


# --------------------------------------------------------------- episode sampling


@st.composite
def sampling_cases(draw):
    classification = draw(st.booleans())
    n_rows = draw(st.integers(0, 16))
    if classification:
        y = np.asarray(draw(st.lists(st.integers(0, 3), min_size=n_rows, max_size=n_rows)), dtype=np.int64)
        if draw(st.booleans()):
            y = np.array(["a", "b", "c", "d"])[y] if n_rows else np.array([], dtype=str)
    else:
        y = draw(hnp.arrays(np.float64, n_rows, elements=st.floats(-5, 5)))
    settings_ = dict(
        n_ways=draw(st.sampled_from([None, None, 2, 3])),
        n_shots=draw(st.integers(1, 3)),
        n_queries=draw(st.integers(1, 4)),
        classification=classification,
    )
    return settings_, y, draw(st.sampled_from(["sampled", "rest"])), draw(st.integers(0, 2**32 - 1))


@_settings(150)
@given(sampling_cases())
def test_episode_sampling(case):
    settings_, y, query, seed = case
    sampler = EpisodeSampler(**settings_)
    X = np.arange(y.shape[0], dtype=np.float64).reshape(-1, 1) * 10  # a row's number, in its features
    episode, error = attempt(lambda: sampler.sample(X, y, np.random.default_rng(seed), task="t", query=query))
    if error is not None:
        return
    support = (episode.X_support[:, 0] / 10).astype(np.int64)
    query_rows = (episode.X_query[:, 0] / 10).astype(np.int64)
    assert support.size >= 1 and query_rows.size >= 1
    assert np.unique(support).size == support.size and np.unique(query_rows).size == query_rows.size
    assert not set(support.tolist()) & set(query_rows.tolist()), "a row is both support and query"
    assert set(support.tolist()) | set(query_rows.tolist()) <= set(range(y.shape[0]))
    assert episode.task == "t"
    if sampler.classification:
        assert episode.classes is not None
        np.testing.assert_array_equal(episode.classes[episode.y_support], y[support])
        np.testing.assert_array_equal(episode.classes[episode.y_query], y[query_rows])
        assert set(np.unique(episode.y_query).tolist()) <= set(np.unique(episode.y_support).tolist())
    else:
        np.testing.assert_array_equal(episode.y_support, y[support])
        np.testing.assert_array_equal(episode.y_query, y[query_rows])


# --------------------------------------------------------- learners: adapt, predict

_FITTED = {}


def fitted(cls):
    """One meta-trained learner per class, built on first use and never changed.

    It is stored with what it predicted right after fitting, which every
    example checks again.
    """
    if cls not in _FITTED:
        if cls._classification:
            tasks = make_blob_tasks(n_tasks=6, n_rows_per_class=10, n_features=4, random_state=0)
        else:
            tasks = make_sinusoid_tasks(6, n_rows=10, random_state=0)
        meta = cls(**tiny_params(cls)).fit(tasks)
        _FITTED[cls] = meta, reference_outputs(meta), _state(meta)
    return _FITTED[cls]


@st.composite
def support_and_query(draw, meta):
    """A support set and query rows for ``meta``: half of them usable, half broken somehow."""
    n_features = meta.n_features_in_
    if draw(st.booleans()):  # usable
        n_rows = draw(st.integers(4, 8))
        X_support = draw(feature_tables(n_rows, n_features, clean=True))
        y_support = draw(targets(meta._classification, n_rows, clean=True))
        return X_support, y_support, draw(feature_tables(draw(st.integers(1, 4)), n_features, clean=True))
    n_rows = draw(st.integers(0, 8))
    y_rows = draw(st.sampled_from([n_rows] * 6 + [n_rows + 1]))
    support_features = draw(st.sampled_from([n_features] * 6 + [0, n_features + 1]))
    query_features = draw(st.sampled_from([n_features] * 6 + [n_features + 1]))
    X_support = draw(feature_tables(n_rows, support_features))
    y_support = draw(targets(meta._classification, y_rows))
    X_query = draw(feature_tables(draw(st.integers(0, 4)), query_features))
    return X_support, y_support, X_query


def _check_outputs(meta, out, X_query, y_support):
    out = np.asarray(out)
    assert np.isfinite(out).all(), f"non-finite output: {out}"
    n_query = len(X_query)
    if meta._classification:
        n_classes = np.unique(np.asarray(y_support)).shape[0]
        assert out.shape == (n_query, n_classes)
        np.testing.assert_allclose(out.sum(axis=1), 1, rtol=1e-6)
    else:
        assert out.shape == (n_query,)


def _state(meta):
    """The backbone's weights and train/eval mode."""
    weights = {name: value.detach().clone() for name, value in meta.module_.state_dict().items()}
    return weights, meta.module_.training


def assert_unchanged(meta, reference, state, refused):
    """Same weights and mode; after a refused call, the same predictions too."""
    weights, training = state
    assert all(torch.equal(value, weights[name]) for name, value in meta.module_.state_dict().items())
    assert meta.module_.training == training
    if refused:
        np.testing.assert_array_equal(reference_outputs(meta), reference)


@pytest.mark.parametrize("cls", LEARNERS)
@_settings(30, shrink=False)
@given(data=st.data())
def test_adapt_and_predict_on_generated_support_sets(cls, data):
    meta, reference, state = fitted(cls)
    X_support, y_support, X_query = data.draw(support_and_query(meta))
    out, error = attempt(lambda: outputs(meta, X_query, X_support, y_support))
    refused = error is not None
    if error is None:
        _check_outputs(meta, out, X_query, y_support)
    adapted, error = attempt(lambda: meta.adapt(X_support, y_support))
    refused |= error is not None
    if error is None:
        labels, error = attempt(lambda: adapted.predict(X_query))
        refused |= error is not None
        if error is None and meta._classification:
            assert set(np.asarray(labels).tolist()) <= set(adapted.classes_.tolist())
        elif error is None:
            assert np.isfinite(labels).all()
    assert_unchanged(meta, reference, state, refused)


# ------------------------------------------------------------------- learners: fit


@st.composite
def task_collections(draw, classification, n_features):
    """1 to 3 tasks: half of the collections usable, the others with a broken task or more."""
    clean = draw(st.booleans())
    n_tasks = draw(st.integers(1, 3))
    tasks = []
    for i in range(n_tasks):
        n_rows = draw(st.integers(4 if clean else 2, 10))
        width = n_features if clean else draw(st.sampled_from([n_features] * 8 + [n_features + 1]))
        X = draw(feature_tables(n_rows, width, clean=clean))
        y = draw(targets(classification, n_rows, clean=clean))
        tasks.append(Task(X, y, name=f"task_{i}"))
    return TaskCollection(tasks)


@pytest.mark.parametrize("cls", LEARNERS)
@_settings(12, shrink=False)
@given(data=st.data())
def test_fit_on_generated_tasks(cls, data):
    meta, reference, state = fitted(cls)
    tasks = data.draw(task_collections(cls._classification, 2))
    params = tiny_params(cls, n_shots=1, n_queries=1, n_episodes=2)
    learner, error = attempt(lambda: cls(**params).fit(tasks))
    if error is None:
        assert np.isfinite(learner.history_[:, "train_loss"]).all()
        task = tasks[0]
        out, error = attempt(lambda: outputs(learner, task.X, task.X, task.y))
        if error is None:
            _check_outputs(learner, out, task.X, task.y)
        score, error = attempt(lambda: learner.score(tasks))
        # R² of a single query row is undefined (sklearn gives NaN); accuracy never is.
        single_query = not cls._classification and min(t.n_rows for t in tasks) < 3
        if error is None and not single_query:
            assert np.isfinite(score)
    assert_unchanged(meta, reference, state, refused=False)  # a fit of another learner
