"""Tests of skmeta/tasks/_task.py (Task, TaskCollection) and _split.py (TaskSplit)."""

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GroupKFold, KFold, cross_validate
from sklearn.utils import _safe_indexing

from skmeta import ProtoNetClassifier
from skmeta.tasks import Task, TaskCollection, TaskSplit


def _pairs(n_tasks=5, n_rows=6):
    rng = np.random.default_rng(0)
    return [(rng.normal(size=(n_rows, 2)), np.array([0, 1] * (n_rows // 2))) for _ in range(n_tasks)]


def _long_frame():
    """Three stores, unsorted and interleaved, with a feature and a target."""
    return pd.DataFrame({
        "store": ["s2", "s1", "s2", "s3", "s1", "s3", "s2", "s1"],
        "x1": np.arange(8.0),
        "x2": np.arange(8.0) * 10,
        "sold": ["no", "yes", "yes", "no", "no", "yes", "no", "yes"],
    })


# ------------------------------------------------------------------------ Task


def test_task_keeps_its_inputs_and_reports_its_size():
    X = pd.DataFrame({"a": [1.0, 2.0, 3.0]})
    task = Task(X, ["u", "v", "u"], name="store_7")
    assert task.X is X
    np.testing.assert_array_equal(task.y, ["u", "v", "u"])
    assert task.n_rows == 3
    assert repr(task) == "Task(name='store_7', n_rows=3, n_features=1)"


def test_task_rejects_mismatched_rows_naming_the_task():
    with pytest.raises(ValueError, match=r"Task 'shop' has 3 rows in X but 2 targets"):
        Task(np.zeros((3, 2)), [0, 1], name="shop")


def test_task_rejects_two_dimensional_y():
    with pytest.raises(ValueError, match=r"y of task 'shop' must be one-dimensional; got shape \(3, 1\)"):
        Task(np.zeros((3, 2)), np.zeros((3, 1)), name="shop")


# ------------------------------------------------------------ TaskCollection


def test_collection_is_a_sequence_of_tasks():
    pairs = _pairs(4)
    tasks = TaskCollection(pairs)
    assert len(tasks) == 4
    assert all(isinstance(task, Task) for task in tasks)
    assert [task.name for task in tasks] == [0, 1, 2, 3] == tasks.names
    assert tasks[2] is tasks.tasks[2]
    assert tasks[-1].name == 3
    assert tasks[np.int64(1)].name == 1
    np.testing.assert_array_equal(tasks[1].X, pairs[1][0])


@pytest.mark.parametrize(
    "index, names",
    [
        (slice(1, 4), [1, 2, 3]),
        (slice(None, None, -2), [4, 2, 0]),
        ([3, 0], [3, 0]),
        (np.array([4, 1, 1]), [4, 1, 1]),
        (np.array([True, False, True, False, True]), [0, 2, 4]),
        ([False] * 5, []),
        (np.array([], dtype=int), []),
        ([], []),
    ],
)
def test_collection_indexing_gives_a_collection(index, names):
    tasks = TaskCollection(_pairs(5))
    subset = tasks[index]
    assert isinstance(subset, TaskCollection)
    assert subset.names == names
    assert all(a is tasks[n] for a, n in zip(subset, names, strict=True))


def test_collection_indexing_keeps_the_subclass():
    class MyTasks(TaskCollection):
        pass

    assert type(MyTasks(_pairs(3))[[0, 2]]) is MyTasks


def test_collection_rejects_a_bool_mask_of_the_wrong_length():
    with pytest.raises(IndexError, match=r"mask over 5 tasks must have shape \(5,\); got \(3,\)"):
        TaskCollection(_pairs(5))[np.array([True, False, True])]


@pytest.mark.parametrize("index", [np.array([0.0, 1.0]), np.array([[0, 1]]), ["a"]])
def test_collection_rejects_other_index_arrays(index):
    with pytest.raises(TypeError, match="int, a slice, or a 1-d array of ints or booleans"):
        TaskCollection(_pairs(3))[index]


def test_collection_from_tasks_keeps_their_names():
    tasks = TaskCollection([Task(np.zeros((2, 1)), [0, 1], name="north"),
                            Task(np.ones((2, 1)), [1, 0], name="south")])
    assert tasks.names == ["north", "south"]
    again = TaskCollection(tasks)
    assert again.names == ["north", "south"] and again[0] is tasks[0]


def test_collection_rejects_an_item_that_is_not_a_pair():
    with pytest.raises(TypeError, match="Item 1 of the task list is a int; each item must be a Task or an"):
        TaskCollection([(np.zeros((2, 1)), [0, 1]), 7])


def test_collection_repr_lists_at_most_five_names():
    assert repr(TaskCollection(_pairs(2))) == "TaskCollection(n_tasks=2, names=[0, 1])"
    assert repr(TaskCollection(_pairs(7))).endswith("names=[0, 1, 2, 3, 4]...)")


# ---------------------------------------------------------------- from_frame


def test_from_frame_makes_one_task_per_value_without_the_task_column():
    df = _long_frame()
    tasks = TaskCollection.from_frame(df, task="store", target="sold")
    assert tasks.names == ["s1", "s2", "s3"]
    for task in tasks:
        assert list(task.X.columns) == ["x1", "x2"]
        expected = df[df["store"] == task.name]
        np.testing.assert_array_equal(task.X.to_numpy(), expected[["x1", "x2"]].to_numpy())
        np.testing.assert_array_equal(task.y, expected["sold"].to_numpy())
    assert sum(task.n_rows for task in tasks) == len(df)


def test_from_frame_takes_rows_by_position_when_index_labels_repeat():
    # pd.concat keeps each part's index; .loc on repeated labels would mix tasks.
    df = pd.concat([_long_frame().iloc[:4], _long_frame().iloc[4:].reset_index(drop=True)])
    assert df.index.has_duplicates
    tasks = TaskCollection.from_frame(df, task="store", target="sold")
    assert [task.n_rows for task in tasks] == [3, 3, 2]
    s1 = tasks[0]
    np.testing.assert_array_equal(s1.X["x1"].to_numpy(), [1.0, 4.0, 7.0])
    np.testing.assert_array_equal(s1.y, ["yes", "no", "yes"])


def test_from_frame_uses_plain_names():
    df = pd.DataFrame({"shop": [2.0, 1.0, 3.0, 2.0], "x": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 1, 0]})
    tasks = TaskCollection.from_frame(df, task="shop", target="y")
    assert tasks.names == [1.0, 2.0, 3.0]
    assert type(tasks.names[0]) is float  # not np.float64: it reads plainly in messages
    assert [task.n_rows for task in tasks] == [1, 2, 1]
    assert tasks[1].X["x"].tolist() == [1.0, 4.0]


@pytest.mark.parametrize("missing", [np.nan, None, pd.NA])
def test_rows_without_a_task_id_are_refused_alike_on_both_paths(missing):
    shop = pd.Series(["b", "a", missing, "b"], dtype=object)
    df = pd.DataFrame({"shop": shop, "x": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 1, 0]})
    message = r"no task id \(NaN, None or NA\) in 1 of 4 rows, the first at row 2; drop those rows"
    with pytest.raises(ValueError, match=message):
        TaskCollection.from_frame(df, task="shop", target="y")
    with pytest.raises(ValueError, match=message):
        TaskCollection.from_arrays(df[["x"]], df["y"], df["shop"])


def test_mixed_task_id_types_are_grouped_and_ordered_by_type_then_value():
    tasks = TaskCollection.from_arrays(np.arange(5.0)[:, None], [0, 1, 0, 1, 0], ["b", 3, "b", 3, "a"])
    assert tasks.names == [3, "a", "b"]
    assert [task.X[:, 0].tolist() for task in tasks] == [[1.0, 3.0], [4.0], [0.0, 2.0]]


def test_two_dimensional_groups_and_zero_dimensional_X_are_value_errors():
    with pytest.raises(ValueError, match="groups must be one-dimensional"):
        TaskCollection.from_arrays(np.zeros((4, 2)), [0, 1, 0, 1], np.zeros((4, 2)))
    with pytest.raises(ValueError, match="must be two-dimensional"):
        Task(np.array(5.0), [1])


@pytest.mark.parametrize("role, kwargs", [("task", dict(task="shop", target="sold")),
                                          ("target", dict(task="store", target="y"))])
def test_from_frame_names_a_missing_column(role, kwargs):
    with pytest.raises(ValueError, match=rf"{role}='\w+' is not a column of the DataFrame; its columns are"):
        TaskCollection.from_frame(_long_frame(), **kwargs)


def test_from_frame_rejects_arrays_and_points_to_from_arrays():
    with pytest.raises(TypeError, match="got ndarray. For arrays use TaskCollection.from_arrays"):
        TaskCollection.from_frame(np.zeros((3, 3)), task=0, target=1)


# --------------------------------------------------------------- from_arrays


def test_from_arrays_groups_rows_by_value():
    X = np.arange(12.0).reshape(6, 2)
    y = np.array([0, 1, 0, 1, 1, 0])
    groups = np.array([7, 3, 7, 3, 5, 5])
    tasks = TaskCollection.from_arrays(X, y, groups)
    assert tasks.names == [3, 5, 7]
    assert type(tasks.names[0]) is int
    for task in tasks:
        np.testing.assert_array_equal(task.X, X[groups == task.name])
        np.testing.assert_array_equal(task.y, y[groups == task.name])


def test_from_arrays_keeps_a_dataframe_and_takes_lists():
    X = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0]}, index=[10, 10, 11])
    tasks = TaskCollection.from_arrays(X, ["u", "v", "u"], ["g", "h", "g"])
    assert isinstance(tasks[0].X, pd.DataFrame)
    np.testing.assert_array_equal(tasks[0].X["a"], [1.0, 3.0])
    list_tasks = TaskCollection.from_arrays(X.to_numpy().tolist(), [0, 1, 0], [1, 1, 2])
    np.testing.assert_array_equal(list_tasks[0].X, [[1.0, 4.0], [2.0, 5.0]])


def test_from_arrays_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="one entry per row; got 3, 3 and 2 rows"):
        TaskCollection.from_arrays(np.zeros((3, 2)), [0, 1, 0], [1, 1])


# ------------------------------------------------- sklearn's splitters and CV


def test_sklearn_splitters_split_a_collection_by_task():
    tasks = TaskCollection(_pairs(6))
    seen = []
    for train, test in KFold(3).split(tasks):
        assert isinstance(tasks[train], TaskCollection)
        # What GridSearchCV / cross_validate hand to fit: a plain list of Task.
        train_list = _safe_indexing(tasks, train)
        assert isinstance(train_list, list) and all(isinstance(t, Task) for t in train_list)
        assert [t.name for t in train_list] == tasks[train].names
        seen += tasks[test].names
    assert sorted(seen) == tasks.names


def test_a_meta_learner_fits_on_the_list_sklearn_hands_it(blob_tasks, fast_params):
    train, _ = next(KFold(3).split(blob_tasks))
    task_list = _safe_indexing(blob_tasks, train)
    assert type(task_list) is list
    meta = ProtoNetClassifier(**fast_params).fit(task_list)
    reference = ProtoNetClassifier(**fast_params).fit(blob_tasks[train])
    new = blob_tasks[0]
    np.testing.assert_array_equal(meta.predict_proba(new.X, new.X, new.y),
                                  reference.predict_proba(new.X, new.X, new.y))


def test_cross_validate_over_tasks_and_group_kfold_over_long_format(blob_tasks, fast_params):
    result = cross_validate(ProtoNetClassifier(**fast_params), blob_tasks, cv=KFold(2))
    by_hand = [ProtoNetClassifier(**fast_params).fit(blob_tasks[train]).score(blob_tasks[test])
               for train, test in KFold(2).split(blob_tasks)]
    np.testing.assert_allclose(result["test_score"], by_hand)

    frames = [pd.DataFrame(task.X, columns=[f"f{i}" for i in range(task.X.shape[1])]).assign(
        shop=task.name) for task in blob_tasks]
    X = pd.concat(frames, ignore_index=True)
    y = np.concatenate([task.y for task in blob_tasks])
    meta = ProtoNetClassifier(task_column="shop", **fast_params)
    result = cross_validate(meta, X, y, groups=X["shop"], cv=GroupKFold(3))
    assert result["test_score"].shape == (3,)


# ----------------------------------------------------------------- TaskSplit


def test_task_split_holds_out_a_fraction_of_tasks_disjointly():
    tasks = TaskCollection(_pairs(10))
    train, valid = TaskSplit(0.3, random_state=1)(tasks)
    assert isinstance(train, TaskCollection) and isinstance(valid, TaskCollection)
    assert (len(train), len(valid)) == (7, 3)
    assert sorted(train.names + valid.names) == tasks.names
    assert train.names == sorted(train.names)  # order of the collection kept
    again, _ = TaskSplit(0.3, random_state=1)(tasks)
    assert again.names == train.names
    other = {tuple(TaskSplit(0.3, random_state=seed)(tasks)[1].names) for seed in range(5)}
    assert len(other) > 1


def test_task_split_int_size_and_at_least_one_task():
    tasks = TaskCollection(_pairs(4))
    assert len(TaskSplit(2)(tasks)[1]) == 2
    assert len(TaskSplit(0.1)(tasks)[1]) == 1  # floor(0.4), but never zero
    train, valid = TaskSplit(0.5)(tasks[:1])
    assert valid is None and len(train) == 1


@pytest.mark.parametrize("valid_size, match", [
    (0.0, r"valid_size must be a float in \(0, 1\) or an int >= 0; got 0.0"),
    (1.5, r"valid_size must be a float in \(0, 1\) or an int >= 0; got 1.5"),
    (-1, r"valid_size must be a float in \(0, 1\) or an int >= 0; got -1"),
    (4, "holds out 4 of 4 tasks, leaving none to meta-train on"),
])
def test_task_split_rejects_bad_sizes(valid_size, match):
    with pytest.raises(ValueError, match=match):
        TaskSplit(valid_size)(TaskCollection(_pairs(4)))
