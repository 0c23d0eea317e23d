"""Robustness at the edges of the public API, over every public learner.

- task ids in long format: missing ids are refused on every path (a
  learner's ``task_column``, ``TaskCollection.from_arrays`` and
  ``from_frame``) with the same message; ids of mixed types work;
- labels: missing labels among strings, and huge float labels given to a
  classifier, are refused with a message that says what is wrong;
- exception types: malformed input raises ValueError, not IndexError or a
  torch RuntimeError;
- checkpoints: files are written under a temporary name and moved into
  place with ``os.replace``, so a failed write leaves the previous file whole.
"""

import contextlib
import json
import os
import re

import numpy as np
import pandas as pd
import pytest
import torch
from _tiny import CLASSIFIERS, LEARNERS, fit_tiny, new_task, reference_outputs, tiny_params, tiny_tasks
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import Checkpoint

from skmeta.tasks import Task, TaskCollection
from skmeta.utils import all_learners

#: Any classifier: its tiny tasks (2-class blobs) make the tables of the task-only tests.
A_CLASSIFIER = all_learners("classifier")[0][1]

# ------------------------------------------------------------ task ids, long format


def _long_format(cls, ids):
    """The tiny tasks of ``cls`` as one table, task ``i`` named ``ids[i]``."""
    tasks = tiny_tasks(cls, len(ids))
    frames = [pd.DataFrame(t.X, columns=[f"f{j}" for j in range(t.X.shape[1])]) for t in tasks]
    X = pd.concat(frames, ignore_index=True)
    X["shop"] = pd.Series([ids[i] for i, t in enumerate(tasks) for _ in range(t.n_rows)], dtype=object)
    return X, np.concatenate([t.y for t in tasks])


#: A task column with two missing ids, each in the dtype it comes in.
MISSING_IDS = {
    "nan-in-floats": lambda ids: pd.Series(ids, dtype=float),
    "nan-among-strings": lambda ids: pd.Series([f"s{i}" if i == i else np.nan for i in ids], dtype=object),
    "none-among-strings": lambda ids: pd.Series([f"s{i}" if i == i else None for i in ids], dtype=object),
    "none-among-ints": lambda ids: pd.Series([int(i) if i == i else None for i in ids], dtype=object),
    "NA-in-string-dtype": lambda ids: pd.Series([f"s{i}" if i == i else pd.NA for i in ids], dtype="string"),
    "NA-in-Int64": lambda ids: pd.Series([int(i) if i == i else pd.NA for i in ids], dtype="Int64"),
    "NaT": lambda ids: pd.Series([pd.Timestamp(2024, 1, 1 + int(i)) if i == i else pd.NaT for i in ids]),
}


def _with_missing_ids(cls, kind):
    """A long-format table whose 'shop' column misses the id of rows 3 and 7."""
    X, y = _long_format(cls, list(range(6)))
    ids = np.array(X["shop"], dtype=float)
    ids[[3, 7]] = np.nan
    X["shop"] = MISSING_IDS[kind](ids)
    return X, y


def assert_missing_ids_refused(error, *, column=None):
    message = str(error)
    assert isinstance(error, ValueError), repr(error)
    assert re.search(r"\b2\b", message), f"the number of rows (2) is not named: {message}"
    assert re.search(r"drop", message, re.I) and re.search(r"fill", message, re.I), message
    if column is not None:
        assert repr(column) in message or column in message, message


@pytest.mark.parametrize("kind", list(MISSING_IDS))
def test_missing_task_ids_in_from_arrays(kind):
    X, y = _with_missing_ids(A_CLASSIFIER, kind)
    with pytest.raises(ValueError) as info:
        TaskCollection.from_arrays(X.drop(columns=["shop"]), y, X["shop"])
    assert_missing_ids_refused(info.value)
    with pytest.raises(ValueError) as info:
        TaskCollection.from_arrays(X.drop(columns=["shop"]).to_numpy(), y, X["shop"].to_numpy())
    assert_missing_ids_refused(info.value)


@pytest.mark.parametrize("kind", list(MISSING_IDS))
def test_missing_task_ids_in_from_frame(kind):
    X, y = _with_missing_ids(A_CLASSIFIER, kind)
    with pytest.raises(ValueError) as info:
        TaskCollection.from_frame(X.assign(label=y), task="shop", target="label")
    assert_missing_ids_refused(info.value, column="shop")


@pytest.mark.parametrize("kind", list(MISSING_IDS))
@pytest.mark.parametrize("cls", LEARNERS)
def test_missing_task_ids_in_a_learners_long_format(cls, kind):
    X, y = _with_missing_ids(cls, kind)
    meta = cls(**tiny_params(cls, task_column="shop"))
    with pytest.raises(ValueError) as info:
        meta.fit(X, y)
    assert_missing_ids_refused(info.value, column="shop")
    with pytest.raises(NotFittedError):
        check_is_fitted(meta)


@pytest.mark.parametrize("cls", LEARNERS)
def test_missing_task_ids_at_score_leave_the_learner_as_it_was(cls):
    meta = fit_tiny(cls)
    before = reference_outputs(meta)
    X, y = _with_missing_ids(cls, "none-among-strings")
    meta.set_params(task_column="shop")
    with pytest.raises(ValueError) as info:
        meta.score(X, y)
    assert_missing_ids_refused(info.value, column="shop")
    np.testing.assert_array_equal(reference_outputs(meta), before)


MIXED_IDS = [0, 1, 2, "a", "b", "c"]


def test_mixed_type_task_ids_in_from_arrays_and_from_frame():
    cls = A_CLASSIFIER
    X, y = _long_format(cls, MIXED_IDS)
    features = X.drop(columns=["shop"])
    for tasks in (
        TaskCollection.from_arrays(features, y, X["shop"]),
        TaskCollection.from_arrays(features.to_numpy(), y, X["shop"].to_numpy()),
        TaskCollection.from_frame(X.assign(label=y), task="shop", target="label"),
    ):
        assert len(tasks) == 6
        assert sorted(map(repr, tasks.names)) == sorted(map(repr, MIXED_IDS))  # 1 stays 1, "a" stays "a"
        for task in tasks:
            rows = np.flatnonzero([type(value) is type(task.name) and value == task.name
                                   for value in X["shop"]])
            np.testing.assert_array_equal(np.asarray(task.X, dtype=float), features.to_numpy()[rows])
            np.testing.assert_array_equal(task.y, y[rows])


@pytest.mark.parametrize("cls", LEARNERS)
def test_mixed_type_task_ids_in_a_learners_long_format(cls):
    X, y = _long_format(cls, MIXED_IDS)
    meta = cls(**tiny_params(cls, task_column="shop"))
    assert meta.fit(X, y) is meta
    assert np.isfinite(meta.history_[:, "train_loss"]).all()
    assert np.isfinite(meta.score(X, y))


def test_integer_ids_with_a_nullable_dtype_keep_their_type():
    cls = A_CLASSIFIER
    X, y = _long_format(cls, list(range(6)))
    ids = X["shop"].astype("Int64")
    tasks = TaskCollection.from_arrays(X.drop(columns=["shop"]), y, ids)
    assert tasks.names == list(range(6))
    assert all(type(name) is int for name in tasks.names)


# ------------------------------------------------------------------------- labels


def _string_labels(y):
    return np.where(y == y[0], "no", "yes").astype(object)


def _labels_with_missing(y, missing):
    labels = _string_labels(y)
    labels[[1, 4]] = missing
    return labels


@pytest.mark.parametrize("missing", [None, np.nan, pd.NA], ids=["None", "nan", "NA"])
@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_missing_labels_among_strings(cls, missing):
    meta = fit_tiny(cls)
    before = reference_outputs(meta)
    X_support, y_support, X_query = new_task(cls)
    labels = _labels_with_missing(y_support, missing)
    for call in (
        lambda: meta.adapt(X_support, labels),
        lambda: meta.adapt(X_support, pd.Series(labels)),
        lambda: meta.predict_proba(X_query, X_support, labels),
    ):
        with pytest.raises(ValueError, match="missing"):
            call()
    np.testing.assert_array_equal(reference_outputs(meta), before)

    tasks = TaskCollection(
        Task(t.X, _labels_with_missing(t.y, missing) if i == 2 else _string_labels(t.y), name=t.name)
        for i, t in enumerate(tiny_tasks(cls, 4))
    )
    with pytest.raises(ValueError, match=r"missing") as info:
        clone(meta).fit(tasks)
    assert re.search(r"blobs_2|\b2\b", str(info.value)), str(info.value)  # which task


@pytest.mark.parametrize("missing", [None, np.nan, pd.NA], ids=["None", "nan", "NA"])
@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_missing_labels_among_strings_in_long_format(cls, missing):
    X, y = _long_format(cls, ["u", "v", "w", "x", "y", "z"])
    labels = pd.Series(np.where(y == 0, "no", "yes"), dtype=object)
    labels[[3, 8]] = missing
    with pytest.raises(ValueError, match="missing"):
        cls(**tiny_params(cls, task_column="shop")).fit(X, labels)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_huge_float_labels_for_a_classifier(cls):
    meta = fit_tiny(cls)
    X_support, y_support, X_query = new_task(cls)
    huge = np.where(y_support == y_support[0], 0.0, 1e30)
    for call in (lambda: meta.adapt(X_support, huge),
                 lambda: meta.predict_proba(X_query, X_support, huge)):
        with pytest.raises(ValueError, match=r"continuous|class label") as info:
            call()
        assert str(info.value).strip().lower() not in ("nan", "inf")
    tasks = TaskCollection(Task(t.X, np.where(t.y == 0, 0.0, 1e30), name=t.name) for t in tiny_tasks(cls, 4))
    with pytest.raises(ValueError, match=r"continuous|class label"):
        clone(meta).fit(tasks)


# ---------------------------------------------------------------- exception types


def test_a_task_of_a_scalar_is_a_value_error():
    with pytest.raises(ValueError):
        Task(np.array(5.0), [1])
    with pytest.raises((ValueError, TypeError)):
        Task(5.0, [1])


def test_two_dimensional_groups_are_a_value_error():
    X, y = np.zeros((6, 2)), np.array([0, 1] * 3)
    with pytest.raises(ValueError, match="groups"):
        TaskCollection.from_arrays(X, y, np.zeros((6, 2)))
    with pytest.raises(ValueError, match="groups"):
        TaskCollection.from_arrays(X, y, np.zeros((3, 2)))


@pytest.mark.parametrize("cls", LEARNERS)
def test_a_negative_hidden_size_is_a_value_error(cls):
    meta = cls(**tiny_params(cls, module__hidden_sizes=(-1,)))
    with pytest.raises(ValueError, match="module__hidden_sizes"):
        meta.fit(tiny_tasks(cls, 4))
    with pytest.raises(NotFittedError):
        check_is_fitted(meta)


# -------------------------------------------------------------------- checkpoints


def _record_replaces(monkeypatch):
    """Record each ``os.replace(src, dst)`` as real paths, and do it."""
    renames, replace = [], os.replace

    def recording_replace(src, dst, *args, **kwargs):
        renames.append((os.path.realpath(src), os.path.realpath(dst)))
        return replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", recording_replace)
    return renames


def _checkpoint(tmp_path):
    return Checkpoint(monitor=None, dirname=str(tmp_path))


def _state(meta):
    return {name: value.detach().clone() for name, value in meta.module_.state_dict().items()}


def _assert_state(meta, state):
    after = meta.module_.state_dict()
    assert after.keys() == state.keys()
    for name, value in state.items():
        assert torch.equal(after[name], value), name


@pytest.mark.parametrize("cls", LEARNERS)
def test_checkpoint_files_are_moved_into_place(cls, tmp_path, monkeypatch):
    renames = _record_replaces(monkeypatch)
    meta = cls(**tiny_params(cls, max_epochs=2, callbacks=[_checkpoint(tmp_path)])).fit(tiny_tasks(cls, 6))
    directory = os.path.realpath(tmp_path)
    written = sorted(os.listdir(tmp_path))
    assert {"params.pt", "optimizer.pt", "criterion.pt", "history.json"} <= set(written)
    for name in written:
        final = os.path.join(directory, name)
        sources = [src for src, dst in renames if dst == final]
        assert len(sources) == 2, f"{name}: {len(sources)} replaces for 2 epochs; all: {renames}"
        for source in sources:
            # Same directory (os.replace is atomic only within a file system)
            # and another name, which is not left behind.
            assert os.path.dirname(source) == directory and source != final, source
            assert not os.path.exists(source)
    # What the last epoch wrote loads back.
    state = _state(meta)
    restored = fit_tiny(cls, random_state=1)
    restored.load_params(f_params=str(tmp_path / "params.pt"), f_optimizer=str(tmp_path / "optimizer.pt"))
    _assert_state(restored, state)


def _failing_save(obj, f, *args, **kwargs):
    """``torch.save`` that writes a few bytes, then fails as a full disk would."""
    if isinstance(f, (str, os.PathLike)):
        with open(f, "wb") as file:
            file.write(b"PK\x03\x04 partial")
    else:
        f.write(b"PK\x03\x04 partial")
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("cls", LEARNERS)
def test_a_failed_save_params_keeps_the_previous_file(cls, tmp_path, monkeypatch):
    meta = fit_tiny(cls)
    path = tmp_path / "params.pt"
    meta.save_params(f_params=str(path))
    saved, state = path.read_bytes(), _state(meta)
    meta.partial_fit(tiny_tasks(cls, 6))  # other weights, which fail to be saved
    monkeypatch.setattr(torch, "save", _failing_save)
    with pytest.raises(OSError, match="No space left on device"):
        meta.save_params(f_params=str(path))
    monkeypatch.undo()
    assert path.read_bytes() == saved
    assert sorted(os.listdir(tmp_path)) == ["params.pt"], "a temporary file was left behind"
    restored = fit_tiny(cls, random_state=1)
    restored.load_params(f_params=str(path))
    _assert_state(restored, state)


@pytest.mark.parametrize("cls", LEARNERS)
def test_a_checkpoint_that_fails_keeps_the_previous_one(cls, tmp_path, monkeypatch):
    tasks = tiny_tasks(cls, 6)
    meta = cls(**tiny_params(cls, callbacks=[_checkpoint(tmp_path)])).fit(tasks)
    torch_files = ["criterion.pt", "optimizer.pt", "params.pt"]
    saved = {name: (tmp_path / name).read_bytes() for name in torch_files}
    state = _state(meta)
    monkeypatch.setattr(torch, "save", _failing_save)
    with contextlib.suppress(OSError):  # skorch's Checkpoint reports failures to its sink
        meta.partial_fit(tasks)
    monkeypatch.undo()
    # The files torch.save failed to write are the previous ones; the history,
    # written without torch, is the new one, whole.
    assert {name: (tmp_path / name).read_bytes() for name in torch_files} == saved
    assert sorted(os.listdir(tmp_path)) == sorted([*torch_files, "history.json"]), "a temporary file was left"
    assert len(json.loads((tmp_path / "history.json").read_text())) == len(meta.history_)
    restored = fit_tiny(cls, random_state=1)
    restored.load_params(f_params=str(tmp_path / "params.pt"), f_optimizer=str(tmp_path / "optimizer.pt"))
    _assert_state(restored, state)
