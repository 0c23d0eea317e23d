"""The skorch plumbing of skmeta/_base/: parameters, devices, pickling,
history, callbacks, continued training and seeding."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from _tiny import ESTIMATORS, tiny_params, tiny_tasks
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError
from skorch.callbacks import Checkpoint, EarlyStopping, LRScheduler, ProgressBar
from skorch.exceptions import DeviceWarning

from skmeta import MAMLClassifier, MAMLRegressor, ProtoNetClassifier, TaskSplit
from skmeta.datasets import make_blob_tasks

#: Tiny meta-training: a few episodes of a few rows, with meta-validation.
TINY = dict(
    max_epochs=2,
    n_episodes=8,
    meta_batch_size=4,
    n_shots=2,
    n_queries=3,
    train_split=TaskSplit(2),
    module__hidden_sizes=(8,),
    random_state=0,
)


def _params(estimator_type, **overrides):
    return tiny_params(estimator_type, TINY, **overrides)


def _tasks(estimator_type):
    return tiny_tasks(estimator_type, 6)


def _outputs(meta, task):
    """What a fitted meta-learner gives for the query rows of ``task``."""
    half = task.n_rows // 2
    adapted = meta.adapt(task.X[:half], task.y[:half])
    if hasattr(adapted, "predict_proba"):
        return adapted.predict_proba(task.X[half:])
    return adapted.predict(task.X[half:])


def _state(meta):
    return {name: value.clone() for name, value in meta.module_.state_dict().items()}


def _same_state(left, right):
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


@pytest.fixture(scope="module")
def fitted():
    """One meta-trained estimator of each kind, with its tasks."""
    fitted = {}
    for estimator_type in ESTIMATORS:
        tasks = _tasks(estimator_type)
        fitted[estimator_type] = (estimator_type(**_params(estimator_type)).fit(tasks), tasks)
    return fitted


# ------------------------------------------------------------------ parameters


def test_get_params_lists_signature_and_routed_parameters():
    meta = MAMLClassifier(inner_lr=0.3, module__hidden_sizes=(4,), optimizer__weight_decay=0.1)
    params = meta.get_params(deep=False)
    assert params["inner_lr"] == 0.3
    assert params["module__hidden_sizes"] == (4,)
    assert params["optimizer__weight_decay"] == 0.1
    assert not any(name.endswith("_") for name in params)
    assert {"n_episodes", "n_ways", "n_shots", "task_column", "random_state"} <= params.keys()


def test_routed_parameters_reach_the_module_and_optimizer():
    meta = ProtoNetClassifier(**TINY).set_params(
        module__hidden_sizes=(6, 5), optimizer__weight_decay=0.25
    )
    meta.fit(_tasks(ProtoNetClassifier))
    widths = [layer.out_features for layer in meta.module_.modules() if isinstance(layer, torch.nn.Linear)]
    assert widths == [6, 5]
    assert meta.optimizer_.param_groups[0]["weight_decay"] == 0.25


def test_set_params_on_a_fitted_estimator_rebuilds_what_it_routes_to():
    tasks = _tasks(MAMLClassifier)
    meta = MAMLClassifier(**TINY).fit(tasks)
    meta.set_params(module__hidden_sizes=(3,), optimizer__weight_decay=0.5, lr=0.02)
    assert meta.module_.layers[0].out_features == 3
    assert meta.optimizer_.param_groups[0]["weight_decay"] == 0.5
    assert meta.optimizer_.param_groups[0]["lr"] == 0.02
    params = meta.get_params()
    assert (params["optimizer__weight_decay"], params["lr"]) == (0.5, 0.02)
    meta.fit(tasks)  # a new fit builds them with the new values
    assert meta.module_.layers[0].out_features == 3
    assert meta.optimizer_.param_groups[0]["weight_decay"] == 0.5
    meta.set_params(optimizer__weight_decay=0.125)  # alone: skorch changes the live optimizer
    assert meta.optimizer_.param_groups[0]["weight_decay"] == 0.125
    assert clone(meta).get_params()["optimizer__weight_decay"] == 0.125


def test_misspelled_routed_parameter_is_refused():
    meta = ProtoNetClassifier(**TINY, modul__hidden_sizes=(4,))
    with pytest.raises(ValueError, match="modul__hidden_sizes"):
        meta.fit(_tasks(ProtoNetClassifier))


@pytest.mark.parametrize(
    "params, name",
    [({"n_shots": 0}, "n_shots"), ({"lr": -1.0}, "lr"), ({"device": "tpu"}, "device")],
)
def test_invalid_parameter_values_are_named(params, name):
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of ProtoNetClassifier"):
        ProtoNetClassifier(**{**TINY, **params}).fit(_tasks(ProtoNetClassifier))


# ------------------------------------------------------------------- history


@pytest.mark.parametrize("estimator_type", ESTIMATORS)
def test_history_records_losses_and_score_per_epoch(fitted, estimator_type):
    meta, _ = fitted[estimator_type]
    assert len(meta.history_) == TINY["max_epochs"]
    for column in ("train_loss", "valid_loss", "valid_score", "dur"):
        values = np.asarray(meta.history_[:, column], dtype=float)
        assert values.shape == (TINY["max_epochs"],)
        assert np.isfinite(values).all()
    # Each epoch's value is the mean of its meta-batches' values, weighted by
    # their episodes (tests/test_parameters.py recomputes valid_score itself
    # from the validation episodes).
    for epoch in meta.history_:
        for name in ("train", "valid"):
            batches = [b for b in epoch["batches"] if f"{name}_loss" in b]
            weights = [b[f"{name}_batch_size"] for b in batches]
            for column in [f"{name}_loss"] + (["valid_score"] if name == "valid" else []):
                expected = np.average([b[column] for b in batches], weights=weights)
                assert epoch[column] == pytest.approx(expected, rel=1e-12)
    # one record per meta-batch of episodes
    n_batches = -(-TINY["n_episodes"] // TINY["meta_batch_size"])
    assert len(meta.history_[-1, "batches"]) == n_batches + 1  # training batches, then one valid


def test_train_split_none_records_no_validation():
    meta = ProtoNetClassifier(**{**TINY, "train_split": None}).fit(_tasks(ProtoNetClassifier))
    assert np.isfinite(meta.history_[:, "train_loss"]).all()
    for column in ("valid_loss", "valid_score"):
        assert column not in meta.history_[-1]


# ----------------------------------------------------------------- callbacks


def test_early_stopping_on_valid_score_stops_early():
    # A learning rate this small leaves valid_score where it is: no improvement.
    meta = ProtoNetClassifier(
        **{**TINY, "max_epochs": 10, "lr": 1e-12},
        callbacks=[EarlyStopping(monitor="valid_score", lower_is_better=False, patience=1)],
    ).fit(_tasks(ProtoNetClassifier))
    assert len(meta.history_) == 2


@pytest.mark.parametrize("train_split", [TaskSplit(2), None])
def test_progress_bar_runs(train_split):
    meta = ProtoNetClassifier(
        **{**TINY, "train_split": train_split}, callbacks=[ProgressBar(batches_per_epoch="auto")]
    )
    meta.fit(_tasks(ProtoNetClassifier))
    assert len(meta.history_) == TINY["max_epochs"]


def test_checkpoint_writes_files_and_load_params_restores_them(tmp_path):
    tasks = _tasks(ProtoNetClassifier)
    checkpoint = Checkpoint(dirname=tmp_path, monitor=None)  # saves every epoch
    meta = ProtoNetClassifier(**TINY, callbacks=[checkpoint]).fit(tasks)
    assert {"params.pt", "optimizer.pt", "history.json"} <= {p.name for p in tmp_path.iterdir()}

    other = ProtoNetClassifier(**{**TINY, "random_state": 1}).fit(tasks)
    assert not _same_state(_state(other), _state(meta))
    other.load_params(checkpoint=checkpoint)
    assert _same_state(_state(other), _state(meta))
    assert other.history_[:, "train_loss"] == meta.history_[:, "train_loss"]
    np.testing.assert_allclose(_outputs(other, tasks[0]), _outputs(meta, tasks[0]))


def test_lr_scheduler_changes_the_optimizer_learning_rate():
    meta = ProtoNetClassifier(
        **{**TINY, "lr": 0.01},
        callbacks=[LRScheduler(policy=torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)],
    ).fit(_tasks(ProtoNetClassifier))
    assert meta.optimizer_.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5 ** TINY["max_epochs"])
    assert meta.history_[:, "event_lr"] == pytest.approx([0.01, 0.005])


# ------------------------------------------------ warm_start and partial_fit


def test_warm_start_continues_training():
    tasks = _tasks(ProtoNetClassifier)
    meta = ProtoNetClassifier(**TINY, warm_start=True).fit(tasks)
    module = meta.module_
    before = _state(meta)
    meta.fit(tasks)
    assert meta.module_ is module  # not rebuilt
    assert len(meta.history_) == 2 * TINY["max_epochs"]
    assert not _same_state(_state(meta), before)


def test_warm_start_refuses_tasks_of_another_width():
    meta = ProtoNetClassifier(**TINY, warm_start=True).fit(_tasks(ProtoNetClassifier))
    wider = make_blob_tasks(n_tasks=6, n_rows_per_class=10, n_features=5, random_state=0)
    with pytest.raises(ValueError, match="have 5 features.*meta-trained on 4"):
        meta.fit(wider)
    assert meta.n_features_in_ == 4


def test_fit_without_warm_start_starts_over():
    tasks = _tasks(ProtoNetClassifier)
    meta = ProtoNetClassifier(**TINY).fit(tasks)
    first = (_state(meta), meta.history_[:, "train_loss"])
    meta.fit(tasks)
    assert len(meta.history_) == TINY["max_epochs"]
    assert _same_state(_state(meta), first[0])
    assert meta.history_[:, "train_loss"] == first[1]


@pytest.mark.parametrize("estimator_type", ESTIMATORS)
def test_partial_fit_initializes_then_continues(estimator_type):
    tasks = _tasks(estimator_type)
    meta = estimator_type(**_params(estimator_type))
    meta.partial_fit(tasks)
    assert len(meta.history_) == TINY["max_epochs"]
    before = _state(meta)
    meta.partial_fit(tasks)
    assert len(meta.history_) == 2 * TINY["max_epochs"]
    assert not _same_state(_state(meta), before)


# -------------------------------------------------------------- random state


@pytest.mark.parametrize("estimator_type", ESTIMATORS)
def test_same_random_state_gives_same_history_and_predictions(estimator_type):
    tasks = _tasks(estimator_type)
    params = _params(estimator_type, module__dropout=0.25)  # dropout draws from torch's RNG
    runs = [estimator_type(**params).fit(tasks) for _ in range(2)]
    columns = ("train_loss", "valid_loss", "valid_score")
    assert runs[0].history_[:, columns] == runs[1].history_[:, columns]
    assert _same_state(_state(runs[0]), _state(runs[1]))
    np.testing.assert_array_equal(_outputs(runs[0], tasks[0]), _outputs(runs[1], tasks[0]))

    other = estimator_type(**{**params, "random_state": 1}).fit(tasks)
    assert other.history_[:, "train_loss"] != runs[0].history_[:, "train_loss"]


def test_fit_leaves_torch_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ProtoNetClassifier(**{**TINY, "module__dropout": 0.25}).fit(_tasks(ProtoNetClassifier))
    assert torch.equal(torch.rand(3), expected)


# ------------------------------------------------------------------- devices


def test_device_auto_resolves_to_what_is_there(fitted):
    meta, _ = fitted[ProtoNetClassifier]
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert meta.device == "auto"  # the parameter is left as given
    assert meta.device_ == expected
    assert next(meta.module_.parameters()).device.type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_is_refused():
    with pytest.raises(ValueError, match="CUDA is not available"):
        ProtoNetClassifier(**TINY, device="cuda").fit(_tasks(ProtoNetClassifier))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("estimator_type", ESTIMATORS)
def test_fit_on_cuda_and_pickle(estimator_type):
    tasks = _tasks(estimator_type)
    meta = estimator_type(**_params(estimator_type, device="cuda")).fit(tasks)
    assert next(meta.module_.parameters()).is_cuda
    loaded = pickle.loads(pickle.dumps(meta))
    assert loaded.device == "cuda" and next(loaded.module_.parameters()).is_cuda
    np.testing.assert_allclose(_outputs(loaded, tasks[0]), _outputs(meta, tasks[0]), rtol=1e-5)


# ------------------------------------------------------------------ pickling


@pytest.mark.parametrize("estimator_type", ESTIMATORS)
def test_pickle_round_trip_gives_the_same_predictions(fitted, estimator_type):
    meta, tasks = fitted[estimator_type]
    loaded = pickle.loads(pickle.dumps(meta))
    assert _same_state(_state(loaded), _state(meta))
    assert loaded.device == meta.device and loaded.device_ == meta.device_
    assert loaded.get_params(deep=False).keys() == meta.get_params(deep=False).keys()
    np.testing.assert_array_equal(_outputs(loaded, tasks[0]), _outputs(meta, tasks[0]))
    assert loaded.score(tasks) == meta.score(tasks)


def test_pickled_estimator_goes_on_training(fitted):
    meta, tasks = fitted[MAMLClassifier]
    loaded = pickle.loads(pickle.dumps(meta))
    loaded.partial_fit(tasks)
    assert len(loaded.history_) == 2 * TINY["max_epochs"]


def test_pickle_of_an_unfitted_estimator_stays_unfitted():
    loaded = pickle.loads(pickle.dumps(ProtoNetClassifier(**TINY)))
    assert loaded.device == "auto"
    assert not hasattr(loaded, "device_")
    assert not hasattr(loaded, "module_")


def _as_if_fitted_on_cuda(meta, requested):
    """The pickled state of ``meta`` as a machine with CUDA would have written it."""
    state = meta.__getstate__()
    state["device"], state["device_"], state["_requested_device"] = "cuda", "cuda", requested
    return state


@pytest.mark.skipif(torch.cuda.is_available(), reason="simulates a machine without CUDA")
@pytest.mark.parametrize("requested, expected", [("auto", "auto"), ("cuda", "cpu")])
def test_estimator_fitted_on_cuda_unpickles_on_cpu(fitted, requested, expected):
    meta, tasks = fitted[MAMLRegressor]
    loaded = MAMLRegressor.__new__(MAMLRegressor)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded.__setstate__(_as_if_fitted_on_cuda(meta, requested))
    device_warnings = [w for w in caught if issubclass(w.category, DeviceWarning)]
    # "auto" asked for whatever is there; "cuda" is told it fell back to the CPU
    assert bool(device_warnings) == (requested == "cuda")
    assert loaded.device == expected
    assert loaded.device_ == "cpu"
    assert next(loaded.module_.parameters()).device.type == "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # predicting needs no further mapping
        np.testing.assert_array_equal(_outputs(loaded, tasks[0]), _outputs(meta, tasks[0]))
    # and it pickles again, as a CPU model now
    again = pickle.loads(pickle.dumps(loaded))
    assert again.device_ == "cpu"
