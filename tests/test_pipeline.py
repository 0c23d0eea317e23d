"""Meta-pipelines: a new task's support rows go through the fitted preprocessing too."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils.validation import check_is_fitted

from skmeta import AdaptedClassifier, ProtoNetClassifier, make_task_preprocessor
from skmeta.datasets import load_adult_tasks, make_blob_tasks
from skmeta.pipeline import MetaPipeline, _refuse_plain_pipeline, make_meta_pipeline

TINY = dict(
    max_epochs=1,
    n_episodes=8,
    meta_batch_size=4,
    n_shots=2,
    n_queries=3,
    train_split=None,
    device="cpu",
    random_state=0,
    module__hidden_sizes=(8,),
)
NEW = ["Sales", "Tech-support", "Craft-repair"]  # held-out occupations


@pytest.fixture(scope="module")
def adult():
    """15 rows of each income class per occupation: raw features, labels."""
    df = load_adult_tasks(return_frame=True).groupby(["occupation", "income"]).head(15)
    df = df.reset_index(drop=True)
    return df.drop(columns="income"), df["income"].to_numpy()


@pytest.fixture(scope="module")
def fitted(adult):
    """A meta-pipeline fitted on all but the NEW occupations; the NEW rows."""
    X, y = adult
    new = X["occupation"].isin(NEW).to_numpy()
    pipe = make_meta_pipeline(
        make_task_preprocessor(X, "occupation"),
        ProtoNetClassifier(task_column="occupation", **TINY),
    ).fit(X[~new], y[~new])
    return pipe, X[new], y[new]


def _support(X, y, n=3):
    """The first ``n`` rows of each class of one task, and the other rows."""
    support = np.concatenate([np.flatnonzero(y == label)[:n] for label in np.unique(y)])
    query = np.setdiff1d(np.arange(len(y)), support)
    return X.iloc[support], y[support], X.iloc[query], y[query]


def _one_task(X, y, name="Sales"):
    rows = (X["occupation"] == name).to_numpy()
    return X[rows], y[rows]


class _Echo(ClassifierMixin, BaseEstimator):
    """Predicts zeros; given a support set, asks whether a plain Pipeline sent it."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, X, X_support=None, y_support=None):
        if X_support is not None:
            _refuse_plain_pipeline(self)
        return np.zeros(len(X))


def test_make_meta_pipeline_names_steps_as_make_pipeline():
    scaler, meta = StandardScaler(), ProtoNetClassifier()
    pipe = make_meta_pipeline(scaler, meta, memory=None, verbose=True)
    assert type(pipe) is MetaPipeline and isinstance(pipe, Pipeline)
    assert [name for name, _ in pipe.steps] == [name for name, _ in make_pipeline(scaler, meta).steps]
    assert pipe[0] is scaler and pipe[-1] is meta and pipe.verbose
    cloned = clone(pipe)
    assert type(cloned) is MetaPipeline and cloned[-1] is not meta


def test_adapt_returns_a_fitted_pipeline_equal_to_the_manual_route(fitted):
    pipe, X_new, y_new = fitted
    X_task, y_task = _one_task(X_new, y_new)
    X_support, y_support, X_query, _ = _support(X_task, y_task)
    before = {k: v.clone() for k, v in pipe[-1].module_.state_dict().items()}

    adapted = pipe.adapt(X_support, y_support)

    assert type(adapted) is Pipeline
    check_is_fitted(adapted)
    assert [name for name, _ in adapted.steps] == [name for name, _ in pipe.steps]
    assert isinstance(adapted[0], FrozenEstimator) and adapted[0].estimator is pipe[0]
    assert isinstance(adapted[-1], AdaptedClassifier)
    np.testing.assert_array_equal(adapted.classes_, ["<=50K", ">50K"])
    manual = pipe[-1].adapt(pipe[:-1].transform(X_support), y_support)
    X_query_t = pipe[:-1].transform(X_query)
    np.testing.assert_array_equal(adapted.predict_proba(X_query), manual.predict_proba(X_query_t))
    np.testing.assert_array_equal(adapted.predict(X_query), manual.predict(X_query_t))
    assert all(torch.equal(v, before[k]) for k, v in pipe[-1].module_.state_dict().items())


def test_adapted_pipeline_refits_by_adapting_again_with_the_same_preprocessing(fitted):
    pipe, X_new, y_new = fitted
    X_task, y_task = _one_task(X_new, y_new, "Tech-support")
    X_support, y_support, X_query, y_query = _support(X_task, y_task)
    adapted = pipe.adapt(X_support, y_support)
    fitted_transformers = pipe[0].transformers_

    refitted = clone(adapted).fit(X_query.iloc[::2], y_query[::2])

    expected = pipe.adapt(X_query.iloc[::2], y_query[::2]).predict_proba(X_support)
    np.testing.assert_array_equal(refitted.predict_proba(X_support), expected)
    assert pipe[0].transformers_ is fitted_transformers  # the preprocessing was not refitted
    scores = cross_val_score(adapted, X_task, y_task, cv=3)
    assert np.isfinite(scores).all()


def test_adapt_passes_sample_weight_on_only_when_given(fitted):
    pipe, X_new, y_new = fitted
    X_support, y_support, X_query, _ = _support(*_one_task(X_new, y_new))
    weight = np.linspace(0.5, 2.0, len(y_support))

    adapted = pipe.adapt(X_support, y_support, sample_weight=weight)

    manual = pipe[-1].adapt(pipe[:-1].transform(X_support), y_support, sample_weight=weight)
    expected = manual.predict_proba(pipe[:-1].transform(X_query))
    np.testing.assert_array_equal(adapted.predict_proba(X_query), expected)
    np.testing.assert_array_equal(
        pipe.predict_proba(X_query, X_support=X_support, y_support=y_support, sample_weight=weight), expected
    )


def test_predict_with_a_support_set_transforms_both_sides(fitted):
    pipe, X_new, y_new = fitted
    X_support, y_support, X_query, _ = _support(*_one_task(X_new, y_new))
    adapted = pipe.adapt(X_support, y_support)
    np.testing.assert_array_equal(
        pipe.predict(X_query, X_support=X_support, y_support=y_support), adapted.predict(X_query)
    )
    np.testing.assert_array_equal(
        pipe.predict_proba(X_query, X_support=X_support, y_support=y_support),
        adapted.predict_proba(X_query),
    )
    assert not hasattr(pipe, "decision_function")  # neither has the meta-learner


def test_predict_without_a_support_set_raises_the_meta_learners_error(fitted):
    pipe, X_new, _ = fitted
    with pytest.raises(ValueError, match="pass X_support and y_support"):
        pipe.predict(X_new)
    with pytest.raises(ValueError, match="pass X_support and y_support"):
        pipe.predict_proba(X_new)


def test_score_is_the_episodic_score_of_the_transformed_rows(fitted):
    pipe, X_new, y_new = fitted
    score = pipe.score(X_new, y_new)
    assert score == pytest.approx(pipe[-1].score(pipe[:-1].transform(X_new), y_new), abs=1e-12)


def test_adapted_pipeline_pickles(fitted):
    pipe, X_new, y_new = fitted
    X_support, y_support, X_query, _ = _support(*_one_task(X_new, y_new))
    adapted = pipe.adapt(X_support, y_support)
    np.testing.assert_array_equal(
        pickle.loads(pickle.dumps(adapted)).predict_proba(X_query), adapted.predict_proba(X_query)
    )
    assert pickle.loads(pickle.dumps(pipe)).score(X_new, y_new) == pipe.score(X_new, y_new)


def test_a_meta_pipeline_of_the_meta_learner_alone_adapts_as_it_does():
    tasks = make_blob_tasks(n_tasks=6, n_rows_per_class=10, n_features=4, random_state=0)
    meta = ProtoNetClassifier(**TINY).fit(tasks[:5])
    task = tasks[5]
    for pipe in (make_meta_pipeline(meta), MetaPipeline([("skip", "passthrough"), ("meta", meta)])):
        adapted = pipe.adapt(task.X[::4], task.y[::4])
        np.testing.assert_array_equal(adapted.predict_proba(task.X),
                                      meta.adapt(task.X[::4], task.y[::4]).predict_proba(task.X))
        assert pipe.score(tasks[5:]) == meta.score(tasks[5:])


def test_adapt_needs_a_meta_learner_last():
    X, y = np.arange(12.0).reshape(6, 2), [0, 1] * 3
    pipe = MetaPipeline([("scale", StandardScaler()), ("clf", _Echo())]).fit(X, y)
    with pytest.raises(TypeError, match="last step of a MetaPipeline must be a meta-learner"):
        pipe.adapt(X, y)
    np.testing.assert_array_equal(pipe.predict(X), np.zeros(6))  # otherwise a Pipeline


def test_adapt_before_fit_raises_not_fitted(adult):
    X, y = adult
    pipe = make_meta_pipeline(make_task_preprocessor(X, "occupation"),
                              ProtoNetClassifier(task_column="occupation", **TINY))
    with pytest.raises(Exception, match="not fitted"):
        pipe.adapt(X.iloc[:6], y[:6])


# ------------------------------------------- a plain Pipeline and X_support


def test_refuse_plain_pipeline_finds_the_pipeline_up_the_stack():
    X, y = np.arange(12.0).reshape(6, 2), [0, 1] * 3
    plain = make_pipeline(StandardScaler(), _Echo()).fit(X, y)
    with pytest.raises(ValueError, match=r"skmeta\.pipeline\.make_meta_pipeline .*MetaPipeline"):
        plain.predict(X, X_support=X, y_support=y)
    with pytest.raises(ValueError, match=r"pipe\[-1\]\.adapt\(pipe\[:-1\]\.transform\(X_support\)"):
        plain.predict(X, X_support=X, y_support=y)

    # Support rows that need no transforming, or no support rows: nothing to refuse.
    plain.predict(X)
    make_pipeline(_Echo()).fit(X, y).predict(X, X_support=X, y_support=y)
    Pipeline([("skip", "passthrough"), ("echo", _Echo())]).fit(X, y).predict(X, X_support=X, y_support=y)
    plain[-1].predict(X, X_support=X, y_support=y)  # called directly, not by the pipeline
    MetaPipeline(plain.steps).predict(X)


def test_plain_pipeline_refuses_untransformed_support_rows(fitted):
    pipe, X_new, y_new = fitted
    X_support, y_support, X_query, _ = _support(*_one_task(X_new, y_new))
    plain = Pipeline(pipe.steps)
    for method in (plain.predict, plain.predict_proba):
        with pytest.raises(ValueError, match="skmeta.pipeline.make_meta_pipeline"):
            method(X_query, X_support=X_support, y_support=y_support)
    assert plain.score(X_new, y_new) == pytest.approx(pipe.score(X_new, y_new), abs=1e-12)


def test_plain_pipeline_around_a_meta_pipeline_is_refused_too(fitted):
    pipe, X_new, y_new = fitted
    X_support, y_support, X_query, _ = _support(*_one_task(X_new, y_new))
    outer = Pipeline([("identity", FunctionTransformer()), ("meta", pipe)])
    with pytest.raises(ValueError, match="make_meta_pipeline"):
        outer.predict_proba(X_query, X_support=X_support, y_support=y_support)

