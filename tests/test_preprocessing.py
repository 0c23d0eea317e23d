"""Tests of skmeta/_preprocessing.py: make_task_preprocessor, against
sklearn's StandardScaler and OneHotEncoder fitted by hand."""

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skmeta import ProtoNetClassifier, make_task_preprocessor


def _table(n_rows=40, random_state=0):
    rng = np.random.default_rng(random_state)
    return pd.DataFrame({
        "age": rng.normal(40, 12, size=n_rows),
        "hours": rng.integers(10, 60, size=n_rows),
        "job": rng.choice(["clerk", "cook", "nurse"], size=n_rows),
        "store": rng.choice([3, 7], size=n_rows),  # a numeric task column
        "city": rng.choice(["a", "b"], size=n_rows),
    })


def test_numeric_columns_are_standardised_as_standard_scaler_does():
    X = _table()
    out = make_task_preprocessor(X, "store").fit_transform(X)
    expected = StandardScaler().fit_transform(X[["age", "hours"]])
    np.testing.assert_allclose(out[["age", "hours"]].to_numpy(), expected, rtol=1e-12)
    # i.e. mean 0 and (population) standard deviation 1 per column
    np.testing.assert_allclose(out[["age", "hours"]].mean(), 0, atol=1e-12)
    np.testing.assert_allclose(out[["age", "hours"]].std(ddof=0), 1, rtol=1e-12)


def test_other_columns_are_one_hot_encoded_and_the_task_column_passes_through():
    X = _table()
    out = make_task_preprocessor(X, "store").fit_transform(X)
    encoder = OneHotEncoder(sparse_output=False).fit(X[["job", "city"]])
    one_hot = list(encoder.get_feature_names_out())
    assert list(out.columns) == ["age", "hours", *one_hot, "store"]
    np.testing.assert_array_equal(out[one_hot].to_numpy(), encoder.transform(X[["job", "city"]]))
    # the task column is neither scaled nor encoded, though it is numeric
    np.testing.assert_array_equal(out["store"].to_numpy(), X["store"].to_numpy())


def test_new_rows_are_scaled_with_the_training_rows_statistics():
    train, new = _table(), _table(n_rows=10, random_state=1)
    new.loc[0, "job"] = "pilot"  # a category unseen in training
    preprocess = make_task_preprocessor(train, "store").fit(train)
    out = preprocess.transform(new)
    scaler = StandardScaler().fit(train[["age", "hours"]])
    np.testing.assert_allclose(out[["age", "hours"]].to_numpy(),
                               scaler.transform(new[["age", "hours"]]), rtol=1e-12)
    assert out.filter(like="job_").iloc[0].eq(0).all()  # ignored, not an error
    assert out.filter(like="job_").iloc[1:].sum(axis=1).eq(1).all()


def test_feeds_a_meta_learner_with_a_task_column():
    X = _table(n_rows=80)
    y = (X["age"] > 40).astype(int).to_numpy()
    out = make_task_preprocessor(X, "store").fit_transform(X)
    meta = ProtoNetClassifier(task_column="store", max_epochs=1, n_episodes=2, meta_batch_size=2,
                              n_shots=2, n_queries=2, train_split=None, device="cpu",
                              random_state=0, module__hidden_sizes=(4,)).fit(out, y)
    assert list(meta.feature_names_in_) == [c for c in out.columns if c != "store"]


def test_the_task_column_must_be_in_the_table():
    with pytest.raises(KeyError):
        make_task_preprocessor(_table(), "shop")
