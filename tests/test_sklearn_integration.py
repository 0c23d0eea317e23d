"""The meta-learners among sklearn's tools: clone, parameters, model
selection, and a Pipeline on a long-format table."""

import numpy as np
import pytest
import torch
from _tiny import LEARNERS, module_takes, tiny_params, tiny_tasks
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.metrics import accuracy_score
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skmeta import AdaptedClassifier, MAMLClassifier, MAMLRegressor, ProtoNetClassifier, TaskSplit
from skmeta.datasets import load_adult_tasks

TINY = dict(
    max_epochs=1,
    n_episodes=16,
    meta_batch_size=8,
    n_shots=2,
    n_queries=3,
    train_split=None,
    module__hidden_sizes=(8,),
    random_state=0,
)


def _params(estimator_type, **overrides):
    return tiny_params(estimator_type, TINY, **overrides)


def _tasks(estimator_type, n_tasks=9):
    return tiny_tasks(estimator_type, n_tasks)


# ------------------------------------------------------- clone and parameters


@pytest.mark.parametrize("estimator_type", LEARNERS)
def test_clone_of_a_fitted_estimator_is_unfitted_with_the_same_parameters(estimator_type):
    meta = estimator_type(**_params(estimator_type, optimizer__weight_decay=0.01)).fit(_tasks(estimator_type))
    cloned = clone(meta)
    assert not hasattr(cloned, "module_") and not hasattr(cloned, "n_features_in_")
    assert not cloned.initialized_
    params, cloned_params = meta.get_params(deep=False), cloned.get_params(deep=False)
    assert params.keys() == cloned_params.keys()
    for name in ("module__hidden_sizes", "optimizer__weight_decay", "n_shots", "random_state"):
        if name in params:  # module__hidden_sizes: for default modules that take it
            assert cloned_params[name] == params[name]
    assert repr(cloned_params["train_split"]) == repr(params["train_split"])
    cloned.fit(_tasks(estimator_type))
    assert cloned.history_[:, "train_loss"] == meta.history_[:, "train_loss"]


@pytest.mark.parametrize("estimator_type", LEARNERS)
def test_set_params_then_get_params(estimator_type):
    meta = estimator_type(**_params(estimator_type))
    # A routed parameter of the default module: its hidden widths, or (the
    # in-context network) its width.
    routed = ("module__hidden_sizes", (5,)) if module_takes(estimator_type, "module__hidden_sizes") else (
        "module__width", 4)
    meta.set_params(**{routed[0]: routed[1]}, optimizer__weight_decay=0.1, n_shots=3)
    params = meta.get_params()
    assert params[routed[0]] == routed[1]
    assert params["optimizer__weight_decay"] == 0.1
    assert params["n_shots"] == 3
    assert clone(meta).get_params(deep=False)[routed[0]] == routed[1]
    meta.fit(_tasks(estimator_type))
    widths = {m.out_features for m in meta.module_.modules() if isinstance(m, torch.nn.Linear)}
    assert {5, 4} & widths  # the routed width reached the network
    assert meta.optimizer_.param_groups[0]["weight_decay"] == 0.1


def test_maml_parameters_are_parameters():
    meta = MAMLClassifier(inner_lr=0.2, inner_steps=3, adapt_steps=5, first_order=True)
    params = clone(meta).get_params(deep=False)
    assert (params["inner_lr"], params["inner_steps"], params["adapt_steps"], params["first_order"]) == (
        0.2, 3, 5, True,
    )


# ----------------------------------------------------------- model selection


def test_grid_search_over_maml_parameters_in_parallel():
    tasks = _tasks(MAMLClassifier)
    search = GridSearchCV(
        MAMLClassifier(**TINY), {"inner_lr": [0.05, 0.5], "inner_steps": [1, 2]}, cv=3, n_jobs=2
    ).fit(tasks)
    assert search.best_params_.keys() == {"inner_lr", "inner_steps"}
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    by_hand = cross_val_score(MAMLClassifier(**TINY, **search.best_params_), tasks, cv=3)
    assert search.best_score_ == pytest.approx(by_hand.mean())
    best = search.best_estimator_
    assert {"inner_lr": best.inner_lr, "inner_steps": best.inner_steps} == search.best_params_
    assert best.score(tasks) == pytest.approx(search.score(tasks))


def test_cross_val_score_splits_by_task_in_parallel():
    tasks = _tasks(MAMLClassifier)
    scores = cross_val_score(MAMLClassifier(**TINY), tasks, cv=3, n_jobs=2)
    by_hand = [MAMLClassifier(**TINY).fit(tasks[train]).score(tasks[test])
               for train, test in KFold(3).split(tasks)]
    np.testing.assert_allclose(scores, by_hand)


def test_cross_val_score_of_a_regressor_on_a_task_collection():
    tasks = _tasks(MAMLRegressor)
    scores = cross_val_score(MAMLRegressor(**_params(MAMLRegressor)), tasks, cv=KFold(3))
    by_hand = [MAMLRegressor(**_params(MAMLRegressor)).fit(tasks[train]).score(tasks[test])
               for train, test in KFold(3).split(tasks)]
    np.testing.assert_allclose(scores, by_hand)


def test_grid_search_over_routed_module_and_optimizer_parameters():
    grid = {"module__hidden_sizes": [(4,), (6, 3)], "optimizer__weight_decay": [0.0, 0.1]}
    search = GridSearchCV(ProtoNetClassifier(**TINY), grid, cv=3).fit(_tasks(ProtoNetClassifier))
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert len(search.cv_results_["params"]) == 4
    best = search.best_estimator_
    widths = [m.out_features for m in best.module_.modules() if isinstance(m, torch.nn.Linear)]
    assert tuple(widths) == search.best_params_["module__hidden_sizes"]
    assert best.optimizer_.param_groups[0]["weight_decay"] == search.best_params_["optimizer__weight_decay"]


# --------------------------------------------- a Pipeline on the adult table

HELD_OUT = "Tech-support"


@pytest.fixture(scope="module")
def adult():
    """150 rows per occupation (75 per income class), shuffled; features, target."""
    df = load_adult_tasks(return_frame=True).sample(frac=1, random_state=0)
    df = df.groupby(["occupation", "income"], sort=False).head(75).reset_index(drop=True)
    y = df.pop("income").to_numpy()
    return df, y


def _pipeline(df):
    numeric = df.select_dtypes("number").columns.tolist()
    categorical = [c for c in df.columns if c not in numeric and c != "occupation"]
    encode = ColumnTransformer(
        [
            ("numeric", StandardScaler(), numeric),
            ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
            ("task", "passthrough", ["occupation"]),
        ],
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")
    meta = ProtoNetClassifier(
        task_column="occupation", max_epochs=2, n_episodes=16, meta_batch_size=8, n_shots=5,
        n_queries=10, module__hidden_sizes=(16,), train_split=TaskSplit(1), random_state=0,
    )
    return make_pipeline(encode, meta)


def test_pipeline_tuned_by_group_k_fold_then_adapted_to_a_held_out_occupation(adult):
    df, y = adult
    seen = (df["occupation"] != HELD_OUT).to_numpy()
    pipe = _pipeline(df)
    grid = {"protonetclassifier__lr": [1e-3, 1e-2], "protonetclassifier__module__hidden_sizes": [(16,), (8,)]}
    search = GridSearchCV(pipe, grid, cv=GroupKFold(3))
    search.fit(df[seen], y[seen], groups=df.loc[seen, "occupation"])
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    by_hand = cross_val_score(clone(pipe).set_params(**search.best_params_), df[seen], y[seen],
                              groups=df.loc[seen, "occupation"], cv=GroupKFold(3))
    assert search.best_score_ == pytest.approx(by_hand.mean())

    fitted = search.best_estimator_
    meta = fitted[-1]
    encoded_names = fitted[:-1].get_feature_names_out()
    assert "occupation" in encoded_names
    np.testing.assert_array_equal(meta.feature_names_in_, [n for n in encoded_names if n != "occupation"])
    assert meta.n_features_in_ == len(encoded_names) - 1
    assert len(meta.history_) == 2 and np.isfinite(meta.history_[:, "valid_score"]).all()

    # A new occupation: adapt on 20 labelled rows, predict the others.
    X_new, y_new = df[~seen], y[~seen]
    state = {k: v.clone() for k, v in meta.module_.state_dict().items()}
    X_support = fitted[:-1].transform(X_new.iloc[:20])
    assert "occupation" in X_support.columns  # the task column may stay; it is dropped
    adapted = meta.adapt(X_support, y_new[:20])
    assert isinstance(adapted, AdaptedClassifier)
    np.testing.assert_array_equal(adapted.classes_, ["<=50K", ">50K"])
    np.testing.assert_array_equal(adapted.feature_names_in_, meta.feature_names_in_)
    X_query = fitted[:-1].transform(X_new.iloc[20:])
    proba = adapted.predict_proba(X_query)
    assert proba.shape == (len(X_query), 2)
    assert adapted.score(X_query, y_new[20:]) == accuracy_score(y_new[20:], adapted.predict(X_query))
    np.testing.assert_array_equal(adapted.predict(X_query), adapted.classes_[proba.argmax(1)])
    assert all(torch.equal(v, state[k]) for k, v in meta.module_.state_dict().items())

    # The adapted estimator is refitted per fold on the new occupation's rows.
    X_encoded = fitted[:-1].transform(X_new)
    scores = cross_val_score(adapted, X_encoded, y_new, cv=3)
    y_array = np.asarray(y_new)
    by_hand = [clone(adapted).fit(X_encoded.iloc[train], y_array[train])
               .score(X_encoded.iloc[test], y_array[test])
               for train, test in StratifiedKFold(3).split(X_encoded, y_new)]
    np.testing.assert_allclose(scores, by_hand)
    # The episodic score of the whole pipeline on the held-out occupation.
    assert fitted.score(X_new, y_new) == pytest.approx(meta.score(X_encoded, y_array))


def test_pipeline_refuses_a_table_without_the_task_column(adult):
    df, y = adult
    pipe = _pipeline(df)
    pipe.set_params(columntransformer__transformers=pipe[0].transformers[:2])  # task column dropped
    with pytest.raises(ValueError, match="task_column='occupation' is not a column of X"):
        pipe.fit(df, y)



# ------------------------------------------- every learner: search, pipeline, pickle


def _long_format(tasks):
    """The tasks as one DataFrame of features with a "task" column, and the targets."""
    import pandas as pd

    frames = [pd.DataFrame(task.X, columns=[f"x{j}" for j in range(task.X.shape[1])]).assign(task=task.name)
              for task in tasks]
    return pd.concat(frames, ignore_index=True), np.concatenate([task.y for task in tasks])


@pytest.mark.parametrize("estimator_type", LEARNERS)
def test_grid_search_over_a_meta_pipeline_by_task_then_adapt_and_pickle(estimator_type):
    import pickle

    from skmeta import make_meta_pipeline, make_task_preprocessor

    X, y = _long_format(_tasks(estimator_type, n_tasks=8))
    new = (X["task"] == X["task"].iloc[-1]).to_numpy()  # the last task is held out
    X_train, y_train = X[~new], y[~new]
    pipe = make_meta_pipeline(make_task_preprocessor(X_train, "task"),
                              estimator_type(**_params(estimator_type, task_column="task")))
    name = pipe.steps[-1][0]
    search = GridSearchCV(pipe, {f"{name}__lr": [1e-3, 1e-2]}, cv=GroupKFold(2)).fit(
        X_train, y_train, groups=X_train["task"])
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_estimator_[-1].lr == search.best_params_[f"{name}__lr"]

    X_new, y_new = X[new], y[new]  # with its task column, as the preprocessing was fitted
    if estimator_type._classification:  # three support rows of each class
        support = np.concatenate([np.flatnonzero(y_new == label)[:3] for label in np.unique(y_new)])
    else:
        support = np.arange(6)
    query = np.setdiff1d(np.arange(len(y_new)), support)
    adapted = search.best_estimator_.adapt(X_new.iloc[support], y_new[support])
    expected = search.best_estimator_.predict(X_new.iloc[query], X_new.iloc[support], y_new[support])
    np.testing.assert_array_equal(adapted.predict(X_new.iloc[query]), expected)
    restored = pickle.loads(pickle.dumps(adapted))
    np.testing.assert_array_equal(restored.predict(X_new.iloc[query]), expected)
