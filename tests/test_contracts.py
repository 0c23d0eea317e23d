"""Contracts every public meta-learner keeps, run over ``skmeta.utils.all_learners()``.

- the sklearn surface: parameters, clone, tags, ``fit`` returns self,
  seeded refits reproduce the training loss;
- threads: one fitted learner serves predictions from many threads at once,
  each equal to the sequential one, and is left as it was;
- divergence: a meta-training loss that becomes NaN or infinite stops
  ``fit`` with a ValueError that says where, and the learner keeps its
  previous state (unfitted, or its previous weights);
- large finite inputs give finite predictions or a ValueError, and values
  beyond float32 are reported as an overflow;
- parameters changed after ``fit`` are checked again where they are used.
"""

import ast
import copy
import inspect
import pickle
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from _tiny import (
    LEARNERS,
    adapted_outputs,
    fit_tiny,
    has_param,
    new_task,
    outputs,
    reference_outputs,
    tiny_params,
    tiny_tasks,
)
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from skmeta.tasks import Task, TaskCollection

N_THREADS, CALLS_PER_THREAD = 8, 50


@pytest.fixture(scope="module", params=LEARNERS)
def fitted(request):
    """One meta-trained learner of each kind, shared by this module's tests.

    Tests may change a parameter for a moment and set it back; they must
    leave its fitted state as it was.
    """
    return fit_tiny(request.param)


def _state(meta):
    return {name: value.detach().clone() for name, value in meta.module_.state_dict().items()}


def assert_same_state(meta, before):
    after = meta.module_.state_dict()
    assert after.keys() == before.keys()
    for name, value in before.items():
        assert torch.equal(after[name], value), f"weight {name!r} changed"


def assert_plain_parameters(meta):
    """The backbone holds its own parameters, not torch.func wrappers of them."""
    functorch = torch._C._functorch
    for name, parameter in meta.module_.named_parameters():
        assert type(parameter) is torch.nn.Parameter, (name, type(parameter))
        for check in ("is_gradtrackingtensor", "is_functorch_wrapped_tensor", "is_batchedtensor"):
            if hasattr(functorch, check):
                assert not getattr(functorch, check)(parameter), f"{name} is wrapped ({check})"


def _support_sets(meta, n=4):
    """``n`` different new tasks, so that answers mixed up between threads show."""
    return [new_task(type(meta), random_state=seed) for seed in range(1, n + 1)]


def _run_in_threads(call, n_calls):
    """``call(i)`` for i in range(n_calls) over N_THREADS threads: results and errors."""
    with ThreadPoolExecutor(max_workers=N_THREADS) as pool:
        futures = [pool.submit(call, i) for i in range(n_calls)]
        errors = [future.exception(timeout=300) for future in futures]
        results = [None if error else future.result() for future, error in zip(futures, errors, strict=True)]
    raised = [error for error in errors if error is not None]
    assert not raised, f"{len(raised)} of {n_calls} calls raised; the first: {raised[0]!r}"
    return results


# ---------------------------------------------------------------- sklearn surface


@pytest.mark.parametrize("cls", LEARNERS)
def test_get_params_set_params_clone_round_trip(cls):
    meta = cls(**tiny_params(cls))
    params = meta.get_params(deep=False)
    cloned = clone(meta)
    assert type(cloned) is cls
    cloned_params = cloned.get_params(deep=False)
    assert cloned_params.keys() == params.keys()
    for name, value in params.items():
        if name != "callbacks":  # clone copies; the rest compare by value
            assert cloned_params[name] == value or repr(cloned_params[name]) == repr(value), name
    # set_params of the values get_params gave changes nothing.
    assert meta.set_params(**params) is meta
    assert meta.get_params(deep=False).keys() == params.keys()
    meta.set_params(n_shots=3, module__hidden_sizes=(5,))
    assert meta.get_params()["n_shots"] == 3 and meta.get_params()["module__hidden_sizes"] == (5,)
    assert clone(meta).get_params()["module__hidden_sizes"] == (5,)


@pytest.mark.parametrize("cls", LEARNERS)
def test_tags_say_classifier_or_regressor(cls):
    meta = cls(**tiny_params(cls))
    tags = meta.__sklearn_tags__()
    assert tags.estimator_type == ("classifier" if cls._classification else "regressor")
    assert is_classifier(meta) == cls._classification
    assert is_regressor(meta) == (not cls._classification)
    assert tags.input_tags.allow_nan is False


@pytest.mark.parametrize("cls", LEARNERS)
def test_fit_returns_self_and_seeded_refits_repeat_the_loss(cls):
    tasks = tiny_tasks(cls, 6)
    meta = cls(**tiny_params(cls, max_epochs=2))
    assert meta.fit(tasks) is meta
    first = meta.history_[:, "train_loss"]
    assert np.isfinite(first).all()
    state = _state(meta)
    assert meta.fit(tasks) is meta  # refit from scratch, same random_state
    assert meta.history_[:, "train_loss"] == first
    assert_same_state(meta, state)
    clone_ = clone(meta).fit(tasks)
    assert clone_.history_[:, "train_loss"] == first
    assert_same_state(clone_, state)


# ------------------------------------------------------------------------ threads


# Each test fits its own learner: one that threads broke must not fail other tests.


@pytest.mark.parametrize("how", ["predict", "adapt"])
@pytest.mark.parametrize("cls", LEARNERS)
def test_concurrent_predictions_equal_sequential_ones(cls, how):
    meta = fit_tiny(cls)
    predict = outputs if how == "predict" else adapted_outputs
    tasks = _support_sets(meta)
    expected = [predict(meta, X_query, X_support, y_support) for X_support, y_support, X_query in tasks]
    training, state = meta.module_.training, _state(meta)

    def call(i):
        X_support, y_support, X_query = tasks[i % len(tasks)]
        return predict(meta, X_query, X_support, y_support)

    results = _run_in_threads(call, N_THREADS * CALLS_PER_THREAD)
    for i, result in enumerate(results):
        np.testing.assert_allclose(result, expected[i % len(tasks)], rtol=1e-6, atol=1e-7,
                                   err_msg=f"call {i} (task {i % len(tasks)})")

    # Left as it was: picklable, plain parameters, same mode, same weights, same answers.
    pickle.dumps(meta)
    assert_plain_parameters(meta)
    assert meta.module_.training == training
    assert_same_state(meta, state)
    for (X_support, y_support, X_query), before in zip(tasks, expected, strict=True):
        np.testing.assert_array_equal(predict(meta, X_query, X_support, y_support), before)


@pytest.mark.parametrize("cls", LEARNERS)
def test_concurrent_scores_equal_the_sequential_score(cls):
    meta = fit_tiny(cls)
    tasks = tiny_tasks(type(meta), 4)
    expected = meta.score(tasks)
    training, state = meta.module_.training, _state(meta)
    scores = _run_in_threads(lambda i: meta.score(tasks), 4 * N_THREADS)
    np.testing.assert_allclose(scores, expected, rtol=1e-6, atol=1e-7)
    pickle.dumps(meta)
    assert_plain_parameters(meta)
    assert meta.module_.training == training
    assert_same_state(meta, state)
    assert meta.score(tasks) == expected


# --------------------------------------------------------------------- divergence


class OverflowingModule(torch.nn.Module):
    """A linear backbone whose output turns infinite while ``armed`` is set.

    It takes the arguments the learners fill (``n_features``, ``n_outputs``)
    and the ``hidden_sizes`` the tiny settings route to it.
    """

    armed = False

    def __init__(self, n_features, n_outputs=None, hidden_sizes=(8,)):
        super().__init__()
        self.linear = torch.nn.Linear(n_features, n_outputs or hidden_sizes[-1])

    def forward(self, X):
        out = self.linear(X)
        return out * float("inf") if type(self).armed else out


def assert_names_where(error):
    message = str(error)
    assert re.search(r"epoch \d+", message), message
    assert re.search(r"batch \d+", message), message
    assert "lr" in message, message


#: Learners whose loss cannot overflow: their outputs are attention-weighted
#: means of the support set's labels or targets, so an absurd step drives the
#: kernel's temperature to 0 (a flat kernel) instead. Their weights and
#: predictions must stay finite.
BOUNDED_LOSS = ("MatchingNetClassifier", "MatchingNetRegressor")


@pytest.mark.parametrize("cls", LEARNERS)
def test_a_loss_that_overflows_stops_a_first_fit(cls):
    # SGD with an absurd step: the loss passes 1e18 in the first epoch and
    # is NaN in the second, for every learner whose loss is not bounded.
    meta = cls(**tiny_params(cls, max_epochs=3, lr=1e10, optimizer=torch.optim.SGD))
    if cls.__name__ in BOUNDED_LOSS:
        meta.fit(tiny_tasks(cls, 6))
        assert all(torch.isfinite(p).all() for p in meta.module_.parameters())
        assert np.isfinite(reference_outputs(meta)).all()
        return
    with pytest.raises(ValueError) as info:
        meta.fit(tiny_tasks(cls, 6))
    assert_names_where(info.value)
    with pytest.raises(NotFittedError):
        check_is_fitted(meta)


@pytest.mark.parametrize("cls", LEARNERS)
def test_an_infinite_output_stops_a_first_fit(cls, monkeypatch):
    meta = cls(**tiny_params(cls, module=OverflowingModule))
    monkeypatch.setattr(OverflowingModule, "armed", True)
    with pytest.raises(ValueError) as info:
        meta.fit(tiny_tasks(cls, 6))
    assert_names_where(info.value)
    with pytest.raises(NotFittedError):
        check_is_fitted(meta)
    monkeypatch.setattr(OverflowingModule, "armed", False)
    meta.fit(tiny_tasks(cls, 6))  # what failed can be fitted again
    assert np.isfinite(meta.history_[:, "train_loss"]).all()


@pytest.mark.parametrize("how", ["partial_fit", "warm_start"])
@pytest.mark.parametrize("cls", LEARNERS)
def test_divergence_of_continued_training_keeps_the_previous_weights(cls, how, monkeypatch):
    tasks = tiny_tasks(cls, 6)
    meta = cls(**tiny_params(cls, module=OverflowingModule)).fit(tasks)
    state, before, history = _state(meta), reference_outputs(meta), copy.deepcopy(meta.history_.to_list())
    if how == "warm_start":
        meta.set_params(warm_start=True)
    monkeypatch.setattr(OverflowingModule, "armed", True)
    with pytest.raises(ValueError) as info:
        meta.fit(tasks) if how == "warm_start" else meta.partial_fit(tasks)
    assert_names_where(info.value)
    monkeypatch.setattr(OverflowingModule, "armed", False)
    check_is_fitted(meta)
    assert_same_state(meta, state)
    np.testing.assert_array_equal(reference_outputs(meta), before)
    assert meta.history_.to_list()[: len(history)] == history
    pickle.dumps(meta)


# ------------------------------------------------------------ large finite inputs


def _finite_or_refused(call):
    """Run ``call``: finite output, or a ValueError. Return the error or None."""
    try:
        out = call()
    except ValueError as error:
        return error
    assert np.isfinite(out).all(), f"non-finite output {out}"
    return None


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("where", ["support", "query"])
@pytest.mark.parametrize("scale", [1e20, 3e38], ids=["1e20", "3e38"])
def test_large_finite_inputs(fitted, where, scale):
    X_support, y_support, X_query = new_task(type(fitted))
    before = reference_outputs(fitted)
    if where == "support":
        X_support = X_support / np.abs(X_support).max() * scale
    else:
        X_query = X_query / np.abs(X_query).max() * scale
    _finite_or_refused(lambda: outputs(fitted, X_query, X_support, y_support))
    _finite_or_refused(lambda: adapted_outputs(fitted, X_query, X_support, y_support))
    np.testing.assert_array_equal(reference_outputs(fitted), before)


def assert_overflow_reported(error):
    assert isinstance(error, ValueError), repr(error)
    assert "overflow" in str(error), str(error)
    assert "infinity" not in str(error), str(error)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("where", ["support", "query", "fit", "score"])
def test_values_beyond_float32_are_an_overflow(fitted, where):
    X_support, y_support, X_query = new_task(type(fitted))
    before = reference_outputs(fitted)
    big = np.array(X_support, dtype=np.float64)
    big[1, 0] = 1e39
    tasks = tiny_tasks(type(fitted), 4)
    X_big = np.array(tasks[2].X, dtype=np.float64)
    X_big[1, 0] = 1e39
    bad_tasks = TaskCollection([Task(X_big if i == 2 else t.X, t.y, name=t.name)
                                for i, t in enumerate(tasks)])
    calls = {
        "support": lambda: outputs(fitted, X_query, big, y_support),
        "query": lambda: outputs(fitted, np.array(big), X_support, y_support),
        "fit": lambda: clone(fitted).fit(bad_tasks),
        "score": lambda: fitted.score(bad_tasks),
    }
    with pytest.raises(ValueError) as info:
        calls[where]()
    assert_overflow_reported(info.value)
    np.testing.assert_array_equal(reference_outputs(fitted), before)


# ---------------------------------------------- parameters checked again after fit


def _refused_after_set_params(meta, param, value, call, exceptions=(ValueError,)):
    """``call()`` with ``param=value`` raises naming ``param``; set back, nothing changed."""
    valid = meta.get_params()[param]
    before = reference_outputs(meta)
    meta.set_params(**{param: value})
    try:
        with pytest.raises(exceptions) as info:
            call()
    finally:
        meta.set_params(**{param: valid})
    assert param in str(info.value), str(info.value)
    np.testing.assert_array_equal(reference_outputs(meta), before)


def test_n_shots_is_checked_again_by_score(fitted):
    tasks = tiny_tasks(type(fitted), 4)
    _refused_after_set_params(fitted, "n_shots", 0, lambda: fitted.score(tasks))


def _calls(meta):
    X_support, y_support, X_query = new_task(type(meta))
    calls = {
        "adapt": lambda: meta.adapt(X_support, y_support),
        "predict": lambda: meta.predict(X_query, X_support, y_support),
        "score": lambda: meta.score(tiny_tasks(type(meta), 4)),
    }
    if meta._classification:
        calls["predict_proba"] = lambda: meta.predict_proba(X_query, X_support, y_support)
    return calls


@pytest.mark.parametrize("param, value", [("adapt_steps", -1), ("adapt_steps", 2.5),
                                          ("inner_lr", -0.1), ("inner_lr", 0)])
def test_adaptation_parameters_are_checked_again(fitted, param, value):
    if not has_param(type(fitted), param):
        pytest.skip(f"{type(fitted).__name__} has no {param}")
    for name, call in _calls(fitted).items():
        try:
            _refused_after_set_params(fitted, param, value, call, (ValueError, TypeError))
        except BaseException as error:
            raise AssertionError(f"{name} with {param}={value!r}: {error}") from error


@pytest.mark.parametrize("cls", LEARNERS)
def test_every_parameter_is_documented_with_its_default(cls):
    # numpydoc: "    name : type, default=value" in the class docstring's Parameters.
    doc = inspect.getdoc(cls)
    section = doc[doc.index("Parameters\n----------"):doc.index("Attributes\n----------")]
    defaults = {}  # the most derived __init__ that names a parameter sets its default
    for base in cls.__mro__:
        if "__init__" in vars(base):
            for name, p in inspect.signature(base.__init__).parameters.items():
                if p.default is not inspect.Parameter.empty:
                    defaults.setdefault(name, p.default)
    for name in cls().get_params(deep=False):
        match = re.search(rf"^{name} : (.*)$", section, flags=re.MULTILINE)
        assert match, f"{cls.__name__}: parameter {name!r} is not documented"
        default = defaults.get(name, inspect.Parameter.empty)
        if isinstance(default, (bool, int, float, str, type(None))):
            written = re.search(r"default=(.*)$", match.group(1))
            assert written, (cls.__name__, name, "no default written")
            assert ast.literal_eval(written.group(1)) == default, (cls.__name__, name, default)
