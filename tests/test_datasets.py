"""Tests of skmeta/datasets/: the sinusoid and blob families and the adult table."""

import numpy as np
import pandas as pd
import pytest

from skmeta.datasets import load_adult, load_adult_tasks, make_blob_tasks, make_sinusoid_tasks, sinusoid
from skmeta.tasks import TaskCollection

# ------------------------------------------------------------------ sinusoid


def test_sinusoid_tasks_follow_the_maml_family():
    tasks = make_sinusoid_tasks(200, n_rows=25, random_state=0)
    assert isinstance(tasks, TaskCollection) and len(tasks) == 200
    assert tasks.names[:2] == ["sinusoid_0", "sinusoid_1"]
    amplitudes = np.array([task.amplitude for task in tasks])
    phases = np.array([task.phase for task in tasks])
    X = np.concatenate([task.X for task in tasks])
    assert amplitudes.min() >= 0.1 and amplitudes.max() <= 5.0
    assert phases.min() >= 0.0 and phases.max() <= np.pi
    assert X.min() >= -5.0 and X.max() <= 5.0
    # Uniform, so the samples spread over the ranges rather than one corner.
    assert amplitudes.min() < 1.0 and amplitudes.max() > 4.0
    assert phases.min() < 0.5 and phases.max() > np.pi - 0.5
    assert X.min() < -4.5 and X.max() > 4.5
    for task in tasks[:5]:
        assert task.X.shape == (25, 1) and task.y.shape == (25,)
        np.testing.assert_allclose(task.y, task.amplitude * np.sin(task.X[:, 0] - task.phase), rtol=1e-5,
                                   atol=1e-5)
        np.testing.assert_allclose(sinusoid(task.X, task.amplitude, task.phase), task.y, atol=1e-5)


def test_sinusoid_tasks_are_seeded():
    a, b = make_sinusoid_tasks(3, random_state=7), make_sinusoid_tasks(3, random_state=7)
    c = make_sinusoid_tasks(3, random_state=8)
    for ta, tb, tc in zip(a, b, c, strict=True):
        np.testing.assert_array_equal(ta.X, tb.X)
        np.testing.assert_array_equal(ta.y, tb.y)
        assert ta.amplitude == tb.amplitude and ta.phase == tb.phase
        assert not np.array_equal(ta.X, tc.X) and ta.amplitude != tc.amplitude


def test_sinusoid_ranges_can_be_changed():
    tasks = make_sinusoid_tasks(20, amplitude_range=(1.0, 1.0), phase_range=(0.0, 0.0),
                                x_range=(0.0, 1.0), random_state=0)
    for task in tasks:
        assert task.amplitude == 1.0 and task.phase == 0.0
        np.testing.assert_allclose(task.y, np.sin(task.X[:, 0]), atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_tasks=0), "The 'n_tasks' parameter of make_sinusoid_tasks must be an int in the range"),
    (dict(n_rows=0), "The 'n_rows' parameter"),
    (dict(x_range=(5.0, -5.0)), r"x_range must be a pair \(low, high\) with low <= high; got \(5.0, -5.0\)"),
    (dict(amplitude_range=(1.0,)), "amplitude_range must be a pair"),
])
def test_sinusoid_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_sinusoid_tasks(**{"n_tasks": 2, **kwargs})


# --------------------------------------------------------------------- blobs


def test_blob_tasks_shapes_labels_and_names():
    tasks = make_blob_tasks(n_tasks=3, n_classes=4, n_rows_per_class=7, n_features=5, random_state=0)
    assert tasks.names == ["blobs_0", "blobs_1", "blobs_2"]
    for task in tasks:
        assert task.X.shape == (28, 5) and task.X.dtype == np.float32
        np.testing.assert_array_equal(np.bincount(task.y), [7, 7, 7, 7])
        assert not np.array_equal(task.y[:7], np.zeros(7))  # rows are shuffled


def test_blob_tasks_are_seeded():
    a = make_blob_tasks(n_tasks=2, n_features=3, random_state=1)
    b = make_blob_tasks(n_tasks=2, n_features=3, random_state=1)
    c = make_blob_tasks(n_tasks=2, n_features=3, random_state=2)
    np.testing.assert_array_equal(a[1].X, b[1].X)
    np.testing.assert_array_equal(a[1].y, b[1].y)
    assert not np.array_equal(a[1].X, c[1].X)


def test_blob_classes_differ_only_in_a_shared_informative_subspace():
    tasks = make_blob_tasks(n_tasks=10, n_rows_per_class=200, n_features=6, n_informative=2,
                            noise=1.0, random_state=0)
    # The directions along which class means differ span a 2-d subspace shared by all tasks.
    gaps = np.array([task.X[task.y == 1].mean(0) - task.X[task.y == 0].mean(0) for task in tasks])
    singular = np.linalg.svd(gaps, compute_uv=False)
    assert singular[2] < 0.2 * singular[1]
    # And the class centres move from task to task: the gaps point in different directions.
    unit = gaps / np.linalg.norm(gaps, axis=1, keepdims=True)
    assert np.abs(unit @ unit.T).min() < 0.9


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_classes=1), "The 'n_classes' parameter of make_blob_tasks must be an int in the range"),
    (dict(n_tasks=0), "The 'n_tasks' parameter"),
    (dict(n_features=3, n_informative=4), "n_informative=4 exceeds n_features=3"),
])
def test_blob_tasks_reject_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_blob_tasks(**kwargs)


# --------------------------------------------------------------------- adult


def test_load_adult_reads_the_table_shipped_in_the_package():
    df = load_adult()
    assert df.shape == (48841, 15)
    assert set(df["income"]) == {"<=50K", ">50K"}
    assert df["occupation"].isna().sum() > 0  # missing values are NaN, not "?"
    assert not (df.select_dtypes(exclude="number") == "?").any().any()


def test_load_adult_tasks_twelve_binary_occupations():
    tasks = load_adult_tasks()
    assert len(tasks) == 12
    assert tasks.names == sorted(tasks.names)
    assert "Armed-Forces" not in tasks.names and "Priv-house-serv" not in tasks.names
    for task in tasks:
        assert isinstance(task.X, pd.DataFrame) and task.X.shape[1] == 13
        assert "occupation" not in task.X.columns and "income" not in task.X.columns
        labels, counts = np.unique(task.y, return_counts=True)
        assert labels.tolist() == ["<=50K", ">50K"] and counts.min() >= 30


def test_load_adult_tasks_long_format_matches_the_tasks():
    df = load_adult_tasks(return_frame=True)
    assert isinstance(df, pd.DataFrame) and "occupation" in df.columns and "income" in df.columns
    assert df["occupation"].nunique() == 12 and not df["occupation"].isna().any()
    tasks = load_adult_tasks()
    assert len(df) == sum(task.n_rows for task in tasks)
    again = TaskCollection.from_frame(df, task="occupation", target="income")
    assert again.names == tasks.names
    pd.testing.assert_frame_equal(again[3].X, tasks[3].X)


def test_load_adult_tasks_other_split_and_threshold():
    tasks = load_adult_tasks(task="race", min_rows_per_class=200)
    for task in tasks:
        assert np.unique(task.y, return_counts=True)[1].min() >= 200
    assert len(tasks) < len(load_adult_tasks(task="race", min_rows_per_class=1))


def test_load_adult_tasks_names_a_missing_column():
    with pytest.raises(ValueError, match="task='job' is not a feature column of the adult table; pick one"):
        load_adult_tasks(task="job")
