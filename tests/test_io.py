"""skmeta.io: files that hold data only, loaded exactly, refused when they name foreign types."""

import io
import json
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from _tiny import tiny_params, tiny_tasks
from sklearn.pipeline import Pipeline, make_pipeline
from skops.io.exceptions import UntrustedTypesFoundException
from skorch.callbacks import EarlyStopping
from skorch.exceptions import DeviceWarning

from skmeta import MLP, ProtoNetClassifier, TaskSplit, make_task_preprocessor
from skmeta.datasets import make_blob_tasks, make_sinusoid_tasks
from skmeta.io import dump, get_untrusted_types, load
from skmeta.utils import all_learners

LEARNERS = [pytest.param(cls, id=name) for name, cls in all_learners()]


class WiderMLP(MLP):
    """A backbone of the user's own: not on skmeta.io's allowlist."""


class OpensAFile:
    """A pickle payload: unpickling it calls ``open(path, "w")``, creating the file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def _fit(cls, fast_params, **overrides):
    if not cls._classification and "inner_lr" in cls().get_params():
        overrides.setdefault("inner_lr", 0.01)  # ten steps of 0.1 diverge on the sinusoids
    return cls(**tiny_params(cls, fast_params, **overrides)).fit(tiny_tasks(cls, 6))


def _new_task(cls):
    """Support and query rows of a task unseen in meta-training."""
    if cls._classification:
        task = make_blob_tasks(n_tasks=1, n_rows_per_class=8, n_features=4, random_state=1)[0]
        support = np.r_[np.flatnonzero(task.y == task.y[0])[:3], np.flatnonzero(task.y != task.y[0])[:3]]
    else:
        task = make_sinusoid_tasks(1, n_rows=12, random_state=1)[0]
        support = np.arange(6)
    query = np.setdiff1d(np.arange(len(task.y)), support)
    return task.X[support], task.y[support], task.X[query], task.y[query]


def _other_tasks(cls):
    """Tasks unseen in meta-training, to score on."""
    if cls._classification:
        return make_blob_tasks(n_tasks=3, n_rows_per_class=10, n_features=4, random_state=1)
    return make_sinusoid_tasks(3, n_rows=10, random_state=1)


def _round_trip(estimator, **load_kwargs):
    buffer = io.BytesIO()
    dump(estimator, buffer)
    return load(buffer, **load_kwargs)


def _assert_same_params(a, b):
    """Equal get_params, objects compared by their own parameters or repr."""
    assert type(a) is type(b)
    params_a, params_b = a.get_params(deep=False), b.get_params(deep=False)
    assert params_a.keys() == params_b.keys()
    for name in params_a:
        _assert_same(params_a[name], params_b[name])


def _assert_same(a, b):
    if hasattr(a, "get_params") and not isinstance(a, type):
        _assert_same_params(a, b)
    elif isinstance(a, np.random.RandomState):
        assert type(b) is np.random.RandomState
        np.testing.assert_equal(a.get_state(legacy=False), b.get_state(legacy=False))
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        assert repr(a) == repr(b)


def _assert_same_weights(a, b):
    state_a, state_b = a.module_.state_dict(), b.module_.state_dict()
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def _outputs(estimator, X, X_support=None, y_support=None):
    support = () if X_support is None else (X_support, y_support)
    if hasattr(estimator, "predict_proba"):
        return estimator.predict(X, *support), estimator.predict_proba(X, *support)
    return (estimator.predict(X, *support),)


def _assert_same_outputs(expected, got):
    assert len(expected) == len(got)
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(b, a)


def _rewrite_manifest(buffer, edit):
    """A copy of the file in ``buffer`` whose skmeta.json went through ``edit``."""
    buffer.seek(0)
    tampered = io.BytesIO()
    with zipfile.ZipFile(buffer) as source, zipfile.ZipFile(tampered, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            if name == "skmeta.json":
                manifest = json.loads(data)
                edit(manifest)
                data = json.dumps(manifest)
            target.writestr(name, data)
    return tampered


@pytest.mark.parametrize("cls", LEARNERS)
def test_a_meta_learner_round_trips_exactly_and_trains_on(cls, fast_params):
    meta = _fit(cls, fast_params)
    loaded = _round_trip(meta)

    _assert_same_params(meta, loaded)
    _assert_same_weights(meta, loaded)
    X_support, y_support, X_query, y_query = _new_task(cls)
    _assert_same_outputs(_outputs(meta, X_query, X_support, y_support),
                         _outputs(loaded, X_query, X_support, y_support))
    assert loaded.score(_other_tasks(cls)) == meta.score(_other_tasks(cls))
    assert loaded.history_.to_list() == meta.history_.to_list()
    adapted = loaded.adapt(X_support, y_support)
    np.testing.assert_array_equal(adapted.predict(X_query), meta.adapt(X_support, y_support).predict(X_query))

    # The optimizer's moments and the random streams came along: one more
    # epoch of training gives the same weights on both.
    tasks = tiny_tasks(cls, 6)
    meta.partial_fit(tasks)
    loaded.partial_fit(tasks)
    _assert_same_weights(meta, loaded)
    assert loaded.history_[:, "train_loss"] == meta.history_[:, "train_loss"]


@pytest.mark.parametrize("cls", LEARNERS)
def test_an_adapted_estimator_round_trips_exactly(cls, fast_params):
    X_support, y_support, X_query, y_query = _new_task(cls)
    adapted = _fit(cls, fast_params).adapt(X_support, y_support)
    loaded = _round_trip(adapted)

    assert type(loaded) is type(adapted)
    _assert_same_params(adapted, loaded)
    _assert_same_outputs(_outputs(adapted, X_query), _outputs(loaded, X_query))
    assert loaded.score(X_query, y_query) == adapted.score(X_query, y_query)
    if cls._classification:
        np.testing.assert_array_equal(loaded.classes_, adapted.classes_)
    # Refitting adapts again from the same meta-learned start.
    refit, refit_loaded = adapted.fit(X_query, y_query), loaded.fit(X_query, y_query)
    np.testing.assert_array_equal(refit_loaded.predict(X_support), refit.predict(X_support))


@pytest.mark.parametrize("cls", [pytest.param(c, id=n) for n, c in all_learners() if c._accepts_prior])
def test_a_meta_learner_with_a_fitted_prior_round_trips_exactly(cls, fast_params):
    from sklearn.linear_model import LogisticRegression, Ridge

    prior = LogisticRegression() if cls._classification else Ridge()
    meta = _fit(cls, fast_params, prior=prior, prior_cv=3)
    loaded = _round_trip(meta)

    _assert_same_params(meta, loaded)
    _assert_same_weights(meta, loaded)
    assert type(loaded.prior_) is type(meta.prior_) and loaded.prior_ is not loaded.prior
    np.testing.assert_array_equal(loaded.prior_.coef_, meta.prior_.coef_)
    X_support, y_support, X_query, _ = _new_task(cls)
    _assert_same_outputs(_outputs(meta, X_query, X_support, y_support),
                         _outputs(loaded, X_query, X_support, y_support))
    adapted = meta.adapt(X_support, y_support)
    _assert_same_outputs(_outputs(_round_trip(adapted), X_query), _outputs(adapted, X_query))


def _long_format(random_state=0):
    """Six 2-class tasks in one table: 3 numbers, a category and the task column."""
    rng = np.random.default_rng(random_state)
    tasks = make_blob_tasks(n_tasks=6, n_rows_per_class=10, n_features=3, random_state=random_state)
    frames = [pd.DataFrame(t.X, columns=["a", "b", "c"]).assign(task=f"t{random_state}_{i}")
              for i, t in enumerate(tasks)]
    X = pd.concat(frames, ignore_index=True)
    X.insert(3, "colour", rng.choice(["red", "blue"], size=len(X)))
    return X, np.concatenate([np.where(t.y == t.y[0], "yes", "no") for t in tasks])


def test_a_pipeline_round_trips_exactly(fast_params):
    X, y = _long_format()
    meta = ProtoNetClassifier(**{**fast_params, "task_column": "task"})
    pipe = make_pipeline(make_task_preprocessor(X, "task"), meta).fit(X, y)
    loaded = _round_trip(pipe)

    assert isinstance(loaded, Pipeline)
    _assert_same_params(pipe, loaded)
    X_other, y_other = _long_format(random_state=1)
    assert loaded.score(X_other, y_other) == pipe.score(X_other, y_other)
    new = X["task"] == "t0_5"
    support = pipe[:-1].transform(X[new].iloc[::2])
    query = pipe[:-1].transform(X[new].iloc[1::2])
    pd.testing.assert_frame_equal(loaded[:-1].transform(X[new].iloc[1::2]), query)
    y_support = y[new.to_numpy()][::2]
    _assert_same_outputs(_outputs(pipe[-1], query, support, y_support),
                         _outputs(loaded[-1], query, support, y_support))

    # Preprocessing and an adapted estimator: predicts raw rows of the new task.
    adapted = Pipeline([("encode", pipe[0]), ("adapted", pipe[-1].adapt(support, y_support))])
    loaded = _round_trip(adapted)
    _assert_same_outputs(_outputs(adapted, X[new]), _outputs(loaded, X[new]))


def test_a_meta_pipeline_round_trips_exactly(fast_params):
    pipeline = pytest.importorskip("skmeta.pipeline")
    X, y = _long_format()
    meta = ProtoNetClassifier(**{**fast_params, "task_column": "task"})
    pipe = pipeline.make_meta_pipeline(make_task_preprocessor(X, "task"), meta).fit(X, y)
    loaded = _round_trip(pipe)
    assert type(loaded) is type(pipe)
    X_new, y_new = _long_format(random_state=1)
    new = (X_new["task"] == "t1_0").to_numpy()
    support = {"X_support": X_new[new].iloc[::2], "y_support": y_new[new][::2]}
    np.testing.assert_array_equal(loaded.predict_proba(X_new[new], **support),
                                  pipe.predict_proba(X_new[new], **support))


def test_parameters_that_are_objects_round_trip(fast_params):
    meta = ProtoNetClassifier(**{
        **fast_params,
        "optimizer": torch.optim.SGD,
        "optimizer__momentum": 0.9,
        "criterion": torch.nn.CrossEntropyLoss,
        "train_split": TaskSplit(2, random_state=1),
        "callbacks": [EarlyStopping(monitor="valid_score", lower_is_better=False, patience=3)],
        "random_state": np.random.RandomState(7),
    })
    loaded = _round_trip(meta)  # unfitted
    _assert_same_params(meta, loaded)
    tasks = tiny_tasks(ProtoNetClassifier, 6)
    meta.fit(tasks)
    loaded.fit(tasks)
    _assert_same_weights(meta, loaded)
    assert isinstance(loaded.optimizer_, torch.optim.SGD)
    assert loaded.optimizer_.param_groups[0]["momentum"] == 0.9


def test_a_module_given_as_an_instance_round_trips(fast_params):
    params = {k: v for k, v in fast_params.items() if not k.startswith("module__")}
    meta = ProtoNetClassifier(module=MLP(4, hidden_sizes=(8,)), **params)
    meta.fit(tiny_tasks(ProtoNetClassifier, 6))
    loaded = _round_trip(meta)
    assert loaded.module_ is loaded.module
    _assert_same_weights(meta, loaded)
    X_support, y_support, X_query, _ = _new_task(ProtoNetClassifier)
    np.testing.assert_array_equal(loaded.predict_proba(X_query, X_support, y_support),
                                  meta.predict_proba(X_query, X_support, y_support))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_file_from_a_cuda_machine_loads_on_the_cpu(fast_params):
    meta = _fit(ProtoNetClassifier, fast_params)
    buffer = io.BytesIO()
    dump(meta, buffer)

    def as_if_fitted_on_cuda(node):
        if isinstance(node, dict):
            if node.get("$type") in ("tensor", "parameter"):
                node["device"] = "cuda:0"
            for value in node.values():
                as_if_fitted_on_cuda(value)
        elif isinstance(node, list):
            for value in node:
                as_if_fitted_on_cuda(value)

    def edit(manifest):
        manifest["estimator"]["params"]["device"] = "cuda"
        as_if_fitted_on_cuda(manifest)

    with pytest.warns(DeviceWarning, match="device='cuda'.*CPU"):
        loaded = load(_rewrite_manifest(buffer, edit))
    assert loaded.device == "cpu" and loaded.device_ == "cpu"
    X_support, y_support, X_query, _ = _new_task(ProtoNetClassifier)
    np.testing.assert_array_equal(loaded.predict_proba(X_query, X_support, y_support),
                                  meta.predict_proba(X_query, X_support, y_support))


def test_the_file_is_data_only(fast_params):
    buffer = io.BytesIO()
    dump(_fit(ProtoNetClassifier, fast_params), buffer)
    with zipfile.ZipFile(buffer) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read("skmeta.json"))
        arrays = [np.load(io.BytesIO(archive.read(name)), allow_pickle=False)
                  for name in names if name.endswith(".npy")]
    assert names[:2] == ["skmeta.json", "tensors.safetensors"]
    assert all(n.startswith(("arrays/", "sklearn/")) for n in names[2:])
    assert manifest["format"] == "skmeta.io" and manifest["format_version"] == 1
    assert manifest["estimator"]["name"] == "ProtoNetClassifier"
    assert all(isinstance(a, np.ndarray) for a in arrays)
    assert get_untrusted_types(buffer) == []


def test_pickle_runs_code_while_loading_where_skmeta_io_refuses(tmp_path, fast_params):
    # Why pickle and joblib files must never come from an untrusted source:
    # merely loading this one creates a file (it could as well delete one).
    marker = tmp_path / "written_by_unpickling"
    payload = pickle.dumps(OpensAFile(marker))
    pickle.loads(payload).close()
    assert marker.exists()

    # The same trick in a skmeta file: the backbone swapped for open().
    marker = tmp_path / "written_by_skmeta_io"
    buffer = io.BytesIO()
    dump(_fit(ProtoNetClassifier, fast_params), buffer)

    def swap_backbone(manifest):
        params = manifest["estimator"]["params"]
        params["module"] = {"$type": "global", "module": "builtins", "name": "open"}
        params["module__file"] = str(marker)
        params["module__mode"] = "w"

    tampered = _rewrite_manifest(buffer, swap_backbone)
    assert get_untrusted_types(tampered) == ["builtins.open"]
    with pytest.raises(UntrustedTypesFoundException, match=r"\['builtins.open'\].*trusted="):
        load(tampered)
    assert not marker.exists()


def test_trusted_accepts_the_named_types(fast_params):
    meta = _fit(ProtoNetClassifier, fast_params)
    buffer = io.BytesIO()
    dump(meta, buffer)
    path = f"{WiderMLP.__module__}.{WiderMLP.__qualname__}"

    def swap_backbone(manifest):
        manifest["estimator"]["params"]["module"].update(module=WiderMLP.__module__, name="WiderMLP")

    tampered = _rewrite_manifest(buffer, swap_backbone)
    with pytest.raises(UntrustedTypesFoundException, match=path):
        load(tampered)
    with pytest.raises(UntrustedTypesFoundException, match=path):
        load(tampered, trusted=["torch.nn.modules.linear.Linear"])
    for trusted in ([path], [WiderMLP]):
        loaded = load(tampered, trusted=trusted)
        assert type(loaded.module_) is WiderMLP
        _assert_same_weights(meta, loaded)
    with pytest.raises(TypeError, match="trusted must be a list"):
        load(tampered, trusted=True)


def test_a_user_class_needs_trusted_to_load(fast_params):
    params = {k: v for k, v in fast_params.items() if not k.startswith("module__")}
    meta = ProtoNetClassifier(module=WiderMLP, module__hidden_sizes=(8,), **params)
    buffer = io.BytesIO()
    dump(meta.fit(tiny_tasks(ProtoNetClassifier, 6)), buffer)
    with pytest.raises(UntrustedTypesFoundException, match="WiderMLP"):
        load(buffer)
    _assert_same_weights(meta, load(buffer, trusted=get_untrusted_types(buffer)))


def test_files_not_made_by_skmeta_io_are_refused(tmp_path, fast_params):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"not": "a model"}))
    with pytest.raises(ValueError, match="not a zip archive.*pickle"):
        load(path)
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model.json", "{}")
    with pytest.raises(ValueError, match="without a skmeta.json"):
        load(path)

    buffer = io.BytesIO()
    dump(ProtoNetClassifier(**fast_params), buffer)
    newer = _rewrite_manifest(buffer, lambda manifest: manifest.update(format_version=99))
    with pytest.raises(ValueError, match="format version 99.*upgrade skmeta"):
        load(newer)


def test_dump_names_what_it_cannot_store(fast_params):
    meta = _fit(ProtoNetClassifier, fast_params)
    meta.scorer_ = lambda y, p: 0.0
    with pytest.raises(TypeError, match=r"ProtoNetClassifier\.scorer_ .*lambda"):
        dump(meta, io.BytesIO())
