"""Real group tables: raw-scale targets, support weights, refused arguments,
degenerate splits and progress output (skmeta/_base/, skmeta/callbacks.py)."""

import io
import warnings

import numpy as np
import pandas as pd
import pytest
from _tiny import LEARNERS, tiny_params, tiny_tasks

from skmeta import MAMLClassifier, MAMLRegressor, ProtoNetClassifier
from skmeta.callbacks import ProgressBar
from skmeta.tasks import Task, TaskCollection


def _panel(n_groups, n_rows=24, seed=0):
    """Firms: investment = level + slope * capital, levels 10-1,000 and slopes of both signs."""
    rng = np.random.default_rng(seed)
    tasks = []
    for i in range(n_groups):
        level = rng.uniform(10, 1000)
        X = rng.normal(size=(n_rows, 2)).astype(np.float32)
        y = level + level * 0.2 * (X @ rng.normal(size=2)) + rng.normal(scale=0.02 * level, size=n_rows)
        tasks.append(Task(X, y.astype(np.float32), name=f"firm_{i}"))
    return TaskCollection(tasks)


RAW = dict(max_epochs=4, n_episodes=64, meta_batch_size=8, n_shots=5, n_queries=10,
           train_split=None, random_state=0, module__hidden_sizes=(16,), device="cpu")


def test_raw_scale_targets_adapt_better_than_the_support_mean():
    train, test = _panel(40), _panel(10, seed=1)
    meta = MAMLRegressor(**RAW).fit(train)
    adapted_mae, mean_mae = [], []
    for task in test:
        Xs, ys, Xq, yq = task.X[:5], task.y[:5], task.X[5:], task.y[5:]
        reg = meta.adapt(Xs, ys)
        prediction = reg.predict(Xq)
        assert np.isfinite(prediction).all()
        assert reg.target_scale_ > 1  # adapted on standardised targets, predicted in their units
        adapted_mae.append(np.abs(prediction - yq).mean())
        mean_mae.append(np.abs(ys.mean() - yq).mean())
    assert np.mean(adapted_mae) < 0.8 * np.mean(mean_mae)


def test_standardisation_off_adapts_on_the_raw_targets():
    train = _panel(8)
    task = _panel(1, seed=1)[0]
    meta = MAMLRegressor(**{**RAW, "max_epochs": 1, "standardize_targets": False}).fit(train)
    reg = meta.adapt(task.X[:5], task.y[:5])
    assert (reg.target_mean_, reg.target_scale_) == (0.0, 1.0)
    on = MAMLRegressor(**{**RAW, "max_epochs": 1}).fit(train).adapt(task.X[:5], task.y[:5])
    assert on.target_mean_ == pytest.approx(float(np.mean(task.y[:5])), rel=1e-5)
    assert on.target_scale_ == pytest.approx(float(np.std(task.y[:5])), rel=1e-4)


# ------------------------------------------------------------ sample weights


def _support(meta, task, n_per_class=4):
    if meta._classification:
        rows = np.concatenate([np.flatnonzero(task.y == c)[:n_per_class] for c in np.unique(task.y)])
    else:
        rows = np.arange(2 * n_per_class)
    return task.X[rows], task.y[rows]


@pytest.mark.parametrize("estimator_type", LEARNERS)
def test_zero_weight_support_rows_count_as_dropped(estimator_type, fast_params):
    tasks = tiny_tasks(estimator_type, 6)
    meta = estimator_type(**tiny_params(estimator_type, fast_params)).fit(tasks[:5])
    X, y = _support(meta, tasks[5])
    weight = np.tile([1.0, 0.0], X.shape[0] // 2)
    method = "predict_proba" if meta._classification else "predict"
    weighted = getattr(meta.adapt(X, y, sample_weight=weight), method)(tasks[5].X)
    dropped = getattr(meta.adapt(X[weight > 0], y[weight > 0]), method)(tasks[5].X)
    unweighted = getattr(meta.adapt(X, y), method)(tasks[5].X)
    np.testing.assert_allclose(weighted, dropped, rtol=1e-4, atol=1e-5)
    assert not np.allclose(weighted, unweighted, rtol=1e-4, atol=1e-5)  # the weights matter


@pytest.mark.parametrize("estimator_type", LEARNERS)
def test_weights_are_checked(estimator_type, fast_params):
    tasks = tiny_tasks(estimator_type, 6)
    meta = estimator_type(**tiny_params(estimator_type, fast_params)).fit(tasks[:5])
    X, y = _support(meta, tasks[5])
    with pytest.raises(ValueError, match="Negative values in data passed to .sample_weight"):
        meta.adapt(X, y, sample_weight=-np.ones(len(y)))
    with pytest.raises(ValueError, match="Sample weights must contain at least one non-zero number"):
        meta.adapt(X, y, sample_weight=np.zeros(len(y)))
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(3,\), expected \(\d+,\)"):
        meta.adapt(X, y, sample_weight=np.ones(3))


def test_a_class_whose_rows_all_weigh_zero_is_refused(fast_params):
    tasks = tiny_tasks(ProtoNetClassifier, 6)
    meta = ProtoNetClassifier(**fast_params).fit(tasks[:5])
    X, y = _support(meta, tasks[5])
    with pytest.raises(ValueError, match=r"Every support row of class\(es\) \[1\] has weight 0"):
        meta.adapt(X, y, sample_weight=(y == 0).astype(float))


def test_score_weighs_query_rows_in_long_format(fast_params):
    tasks = tiny_tasks(ProtoNetClassifier, 8)
    frame = pd.concat([pd.DataFrame(t.X).assign(task=t.name, label=t.y) for t in tasks], ignore_index=True)
    frame.columns = [str(c) for c in frame.columns]
    X, y = frame.drop(columns="label"), frame["label"]
    meta = ProtoNetClassifier(**{**fast_params, "task_column": "task"}).fit(
        X[X.task.isin(tasks.names[:6])], y[X.task.isin(tasks.names[:6])])
    held = X.task.isin(tasks.names[6:])
    plain = meta.score(X[held], y[held])
    assert meta.score(X[held], y[held], sample_weight=np.ones(held.sum())) == pytest.approx(plain)
    assert meta.score(X[held], y[held], sample_weight=np.arange(held.sum()) % 3) != pytest.approx(plain)


# ------------------------------------------------------- refused arguments


@pytest.mark.parametrize("estimator_type", LEARNERS)
def test_arguments_without_a_meaning_are_refused(estimator_type, fast_params):
    tasks = tiny_tasks(estimator_type, 6)
    params = tiny_params(estimator_type, fast_params)
    with pytest.raises(TypeError, match=r"fit got unexpected argument\(s\) \['sample_weight'\]"):
        estimator_type(**params).fit(tasks, sample_weight=np.ones(6))
    with pytest.raises(ValueError, match="does not take batch_size: (episodes|pooled rows) are drawn by"):
        estimator_type(**params, batch_size=64).fit(tasks)
    with pytest.raises(ValueError, match="does not take iterator_train__shuffle"):
        estimator_type(**params, iterator_train__shuffle=True).fit(tasks)
    meta = estimator_type(**params).fit(tasks)
    with pytest.raises(ValueError, match="set (meta_batch_size|rows_per_batch) instead"):
        meta.set_params(batch_size=3)
    with pytest.raises(TypeError, match="partial_fit takes no classes"):
        meta.partial_fit(tasks, classes=[0, 1])
    if not estimator_type._classification:  # no classes to count or balance
        for name, value in (("n_ways", 3), ("class_balance", "natural")):
            assert name not in meta.get_params()
            with pytest.raises(ValueError, match=f"is a regressor: {name}=.* has no meaning"):
                estimator_type(**params, **{name: value}).fit(tasks)


# ------------------------------------------------------- degenerate splits


def test_degenerate_splits_warn(fast_params):
    tasks = tiny_tasks(ProtoNetClassifier, 2)
    params = {**fast_params, "train_split": None}
    with pytest.warns(UserWarning, match=r"Meta-training on 1 task \(of 2 given, the rest held out"):
        ProtoNetClassifier(**{**params, "train_split": ProtoNetClassifier().train_split}).fit(tasks)
    with pytest.warns(UserWarning, match=r"held out no task for meta-validation \(1 task"):
        ProtoNetClassifier(**{**params, "train_split": ProtoNetClassifier().train_split}).fit(tasks[:1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ProtoNetClassifier(**params).fit(tasks)  # train_split=None says no validation is wanted


# ------------------------------------------------------------- progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_is_one_line_per_epoch_in_a_log_file(fast_params):
    log = io.StringIO()
    meta = ProtoNetClassifier(**{**fast_params, "max_epochs": 3, "callbacks": [ProgressBar(file=log)]})
    meta.fit(tiny_tasks(ProtoNetClassifier, 6))
    lines = log.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert "\r" not in log.getvalue()
    assert f"train_loss {meta.history_[-1, 'train_loss']:.4f}" in lines[-1]


def test_progress_is_a_bar_in_a_terminal(fast_params):
    terminal = _Terminal()
    meta = ProtoNetClassifier(**{**fast_params, "max_epochs": 2, "callbacks": [ProgressBar(file=terminal)]})
    meta.fit(tiny_tasks(ProtoNetClassifier, 6))
    assert "\r" in terminal.getvalue() and "epoch 1/2" not in terminal.getvalue()


def test_maml_classifier_trains_on_padded_episodes_like_full_ones_when_nothing_is_padded(fast_params):
    tasks = tiny_tasks(MAMLClassifier, 6)
    strict = MAMLClassifier(**{**fast_params, "strict_episodes": True}).fit(tasks)
    lenient = MAMLClassifier(**fast_params).fit(tasks)
    assert strict.history_[:, "train_loss"] == lenient.history_[:, "train_loss"]


# ------------------------------------------------ a messy long-format table


def _messy_table():
    """Twelve shops; 'small' has 3 rows of its minority class, 'single' one class only."""
    tasks = tiny_tasks(ProtoNetClassifier, 12)
    frames = []
    for task in tasks:
        frame = pd.DataFrame(task.X, columns=[f"x{i}" for i in range(task.X.shape[1])])
        frames.append(frame.assign(shop=task.name, label=task.y))
    table = pd.concat(frames, ignore_index=True)
    minority = table.index[(table.shop == "blobs_3") & (table.label == 1)]
    table = table.drop(minority[3:])
    table.loc[table.shop == "blobs_5", "label"] = 0
    table["shop"] = table["shop"].replace({"blobs_3": "small", "blobs_5": "single"})
    return table.drop(columns="label").reset_index(drop=True), table["label"].to_numpy()


def test_a_messy_long_table_fits_scores_and_tunes_with_group_k_fold(fast_params):
    from sklearn.model_selection import GridSearchCV, GroupKFold

    X, y = _messy_table()
    params = {**fast_params, "task_column": "shop", "n_shots": 2, "n_queries": 3}
    with pytest.warns(UserWarning, match=r"1 of 12 tasks cannot give an episode and are left out of "
                                         r"meta-training: task 'single' has 1 class") as record:
        meta = ProtoNetClassifier(**params).fit(X, y)
    assert not [w for w in record if "'small'" in str(w.message)]  # 3 rows still give an episode
    held = X.shop.isin(["blobs_0", "blobs_1", "small"])
    train = ~held & (X.shop != "single")
    meta = ProtoNetClassifier(**params).fit(X[train], y[train])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # held-out tasks, all usable: no warning
        score = meta.score(X[held], y[held])
    assert np.isfinite(score)
    search = GridSearchCV(ProtoNetClassifier(**params), {"n_shots": [1, 2]}, cv=GroupKFold(3),
                          error_score="raise")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        search.fit(X, y, groups=X["shop"])
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert any("'single'" in str(w.message) for w in record)
    assert not any("meta-trained on" in str(w.message) for w in record)  # GroupKFold does not leak


def test_scoring_training_tasks_warns_and_held_out_tasks_do_not(fast_params):
    from sklearn.model_selection import KFold, cross_val_score

    X, y = _messy_table()
    keep = X.shop != "single"
    X, y = X[keep].reset_index(drop=True), y[keep.to_numpy()]
    trained = (X.shop != "blobs_0").to_numpy()
    meta = ProtoNetClassifier(**{**fast_params, "task_column": "shop"}).fit(X[trained], y[trained])
    with pytest.warns(UserWarning, match=r"Scoring 1 task\(s\) that ProtoNetClassifier was meta-trained on "
                                         r"\('blobs_1'\).*GroupKFold"):
        meta.score(X[X.shop == "blobs_1"], y[(X.shop == "blobs_1").to_numpy()])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        meta.score(X[X.shop == "blobs_0"], y[(X.shop == "blobs_0").to_numpy()])
    # A row-wise split puts every shop in train and test: the scores warn.
    with pytest.warns(UserWarning, match="meta-trained on"):
        cross_val_score(ProtoNetClassifier(**{**fast_params, "task_column": "shop"}), X, y,
                        cv=KFold(3, shuffle=True, random_state=0), error_score="raise")
    # Tasks given as a collection are recognised by their rows, whatever their names.
    tasks = tiny_tasks(ProtoNetClassifier, 8)
    meta = ProtoNetClassifier(**fast_params).fit(tasks[:6])
    with pytest.warns(UserWarning, match=r"Scoring 2 task\(s\)"):
        meta.score(tasks[4:6])
    renamed = TaskCollection([Task(t.X, t.y, name=f"other_{i}") for i, t in enumerate(tasks[4:6])])
    with pytest.warns(UserWarning, match=r"Scoring 2 task\(s\)"):
        meta.score(renamed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        meta.score(tasks[6:])


def test_score_takes_another_metric(fast_params):
    from sklearn.metrics import roc_auc_score

    from skmeta.tasks import EpisodeSampler

    tasks = tiny_tasks(ProtoNetClassifier, 8)
    meta = ProtoNetClassifier(**fast_params).fit(tasks[:6])
    rng, aucs = np.random.default_rng(0), []
    for task in tasks[6:]:  # the support draws of score, by hand
        episode = EpisodeSampler(n_shots=2, n_queries=3).sample(np.arange(task.n_rows)[:, None], task.y, rng,
                                                                query="rest")
        support, query = episode.X_support[:, 0], episode.X_query[:, 0]
        proba = meta.adapt(task.X[support], task.y[support]).predict_proba(task.X[query])
        aucs.append(roc_auc_score(task.y[query], proba[:, 1]))
    assert meta.score(tasks[6:], scoring="roc_auc") == pytest.approx(np.mean(aucs))
    assert meta.score(tasks[6:], scoring="accuracy") == pytest.approx(meta.score(tasks[6:]))


def test_a_regressor_score_leaves_out_tasks_with_one_query_row(fast_params):
    tasks = tiny_tasks(MAMLRegressor, 6)
    meta = MAMLRegressor(**tiny_params(MAMLRegressor, fast_params)).fit(tasks)
    short = Task(tasks[0].X[:3], tasks[0].y[:3], name="short")  # 2 shots leave 1 query row
    fresh = tiny_tasks(MAMLRegressor, 8)[6:]
    with pytest.warns(UserWarning, match=r"1 of 3 tasks leave a single query row.*\('short'\)"):
        score = meta.score(TaskCollection([*fresh, short]))
    assert np.isfinite(score)
    with pytest.raises(ValueError, match="no task can be scored"):
        meta.score(TaskCollection([short]))
