"""The demo: meta-train on adult occupations and on sinusoids, then adapt.

Run it with ``skmeta demo`` (or ``python -m skmeta demo``). It prints, for
held-out occupations at 1, 5 and 10 shots, the accuracy of each
meta-learner against models fitted on the support set alone and against a
pooled model; then the sinusoid MSE before and after adaptation; and it
saves a plot.
"""

import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from ._preprocessing import make_task_preprocessor
from .callbacks import ProgressBar
from .datasets import load_adult_tasks, make_sinusoid_tasks, sinusoid
from .exceptions import AdaptationWarning
from .metric import ProtoNetClassifier
from .optimization import MAMLClassifier, MAMLRegressor
from .tasks import EpisodeSampler

TASK = "occupation"
TARGET = "income"
SHOTS = (1, 5, 10)


def adult_preprocessor(df):
    """Scale numeric columns, one-hot the others, pass the task column through.

    Parameters
    ----------
    df : DataFrame
        The long-format adult table (features and the task column).

    Returns
    -------
    ColumnTransformer
        Unfitted; it outputs a DataFrame that keeps the task column's name.

    Examples
    --------
    >>> from skmeta._demo import adult_preprocessor
    >>> from skmeta.datasets import load_adult_tasks
    >>> df = load_adult_tasks(return_frame=True).head(200)
    >>> adult_preprocessor(df).fit_transform(df.drop(columns="income"))["occupation"].iloc[0]
    'Adm-clerical'
    """
    return make_task_preprocessor(df.drop(columns=[TARGET], errors="ignore"), TASK)


def _split_occupations(df, n_test, seed):
    names = np.array(sorted(df[TASK].unique()))
    test = np.random.default_rng(seed).choice(names, n_test, replace=False)
    return df[~df[TASK].isin(test)], df[df[TASK].isin(test)]


def _support_baselines(n_shots):
    # k is odd and at most the shots per class, so no class wins a vote by a tie-break
    return {
        "logistic (support only)": LogisticRegression(max_iter=1000),
        "kNN (support only)": KNeighborsClassifier(n_neighbors=min(3, n_shots)),
    }


def adult_few_shot(*, quick=False, seed=0, log=print):
    """Meta-train on some occupations, adapt to the others at 1/5/10 shots.

    Parameters
    ----------
    quick : bool, default=False
        Fewer epochs and support draws, for a smoke test.
    seed : int, default=0
    log : callable, default=print

    Returns
    -------
    DataFrame
        Mean accuracy per learner (rows) and shots (columns), over held-out
        occupations and support draws.
    """
    df = load_adult_tasks(return_frame=True)
    train, test = _split_occupations(df, n_test=4, seed=seed)
    log(f"adult: meta-train on {train[TASK].nunique()} occupations, "
        f"test on {sorted(test[TASK].unique())}")
    preprocess = adult_preprocessor(df).fit(train.drop(columns=TARGET))
    X_train = preprocess.transform(train.drop(columns=TARGET))
    X_test = preprocess.transform(test.drop(columns=TARGET))
    epochs = 3 if quick else 15
    common = dict(task_column=TASK, n_shots=5, n_queries=15, max_epochs=epochs,
                  n_episodes=200, random_state=seed, callbacks=[ProgressBar()])
    learners = {
        "ProtoNet": ProtoNetClassifier(**common),
        "MAML": MAMLClassifier(inner_lr=0.1, inner_steps=3, adapt_steps=10, **common),
        # The pooled model as prior, corrected per occupation; episodes in the
        # occupations' own class proportions, so the correction keeps the base rate.
        "MAML + pooled prior": MAMLClassifier(
            prior=LogisticRegression(max_iter=2000), class_balance="natural",
            inner_lr=0.1, inner_steps=3, adapt_steps=10, **common),
    }
    for name, learner in learners.items():
        start = time.perf_counter()
        learner.fit(X_train, train[TARGET])
        log(f"  {name} meta-trained in {time.perf_counter() - start:.1f} s")
    pooled = LogisticRegression(max_iter=2000)
    pooled.fit(X_train.drop(columns=TASK), train[TARGET])

    rows = []
    n_draws = 2 if quick else 10
    for n_shots in SHOTS:
        sampler = EpisodeSampler(n_shots=n_shots, n_queries=1)
        rng = np.random.default_rng(seed)
        for occupation, rows_of_task in X_test.groupby(TASK):
            X_task = rows_of_task.drop(columns=TASK)
            y_task = test.loc[rows_of_task.index, TARGET].to_numpy()
            for _ in range(n_draws):
                index = np.arange(len(y_task))
                episode = sampler.sample(index, y_task, rng, query="rest")
                query = rng.permutation(episode.X_query)[:1000]
                X_s, y_s = X_task.iloc[episode.X_support], y_task[episode.X_support]
                X_q, y_q = X_task.iloc[query], y_task[query]
                scores = {name: learner.adapt(X_s, y_s).score(X_q, y_q)
                          for name, learner in learners.items()}
                for name, model in _support_baselines(n_shots).items():
                    scores[name] = model.fit(X_s, y_s).score(X_q, y_q)
                scores["pooled logistic (all training rows)"] = pooled.score(X_q, y_q)
                rows += [{"learner": k, "shots": n_shots, "task": occupation, "accuracy": v}
                         for k, v in scores.items()]
    results = pd.DataFrame(rows)
    return results.pivot_table(index="learner", columns="shots", values="accuracy", sort=False)


def sinusoid_adaptation(*, quick=False, seed=0, log=print):
    """MAML on the sinusoid family: MSE of 10-shot tasks before and after adapting.

    Parameters
    ----------
    quick : bool, default=False
    seed : int, default=0
    log : callable, default=print

    Returns
    -------
    summary : DataFrame
        Query MSE on fresh tasks before and after adaptation.
    example : dict
        One fresh task's support points and curves, for the plot.
    """
    tasks = make_sinusoid_tasks(1000, n_rows=50, random_state=seed)
    maml = MAMLRegressor(
        inner_lr=0.01, lr=1e-3, inner_steps=1, adapt_steps=10, n_shots=10, n_queries=10,
        standardize_targets=False,
        meta_batch_size=25, n_episodes=1000, max_epochs=4 if quick else 40, train_split=None,
        random_state=seed, callbacks=[ProgressBar()],
    )
    start = time.perf_counter()
    maml.fit(tasks)
    log(f"sinusoid: MAML meta-trained in {time.perf_counter() - start:.1f} s")
    fresh = make_sinusoid_tasks(100, n_rows=110, random_state=seed + 1)
    before, after, shortened = [], [], 0
    for task in fresh:
        X_s, y_s, X_q, y_q = task.X[:10], task.y[:10], task.X[10:], task.y[10:]
        with warnings.catch_warnings():
            # counted and reported once below, rather than one warning per task
            warnings.simplefilter("ignore", AdaptationWarning)
            adapted = maml.adapt(X_s, y_s)
        shortened += adapted.adapt_history_["backtracked"]
        after.append(np.mean((adapted.predict(X_q) - y_q) ** 2))
        unadapted = maml.set_params(adapt_steps=0).adapt(X_s, y_s)
        before.append(np.mean((unadapted.predict(X_q) - y_q) ** 2))
        maml.set_params(adapt_steps=10)
    if shortened:
        log(f"  the guard shortened a step of inner_lr={maml.inner_lr} on {shortened} of "
            f"{len(fresh)} fresh tasks (a step that raised the support loss was halved)")
    summary = pd.DataFrame(
        {"query MSE": [np.mean(before), np.mean(after)]},
        index=["before adaptation (meta-learned start)", "after 10 steps on 10 shots"],
    )
    task = fresh[0]
    grid = np.linspace(-5, 5, 200, dtype=np.float32)[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AdaptationWarning)  # counted above
        example = {
            "grid": grid[:, 0],
            "truth": sinusoid(grid, task.amplitude, task.phase),
            "X_support": task.X[:10, 0],
            "y_support": task.y[:10],
            "after": maml.adapt(task.X[:10], task.y[:10]).predict(grid),
            "before": maml.set_params(adapt_steps=0).adapt(task.X[:10], task.y[:10]).predict(grid),
        }
    maml.set_params(adapt_steps=10)
    return summary, example


def plot_demo(accuracy, example, path):
    """Save the sinusoid adaptation and the accuracy-vs-shots panels to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(example["grid"], example["truth"], "k-", label="true task")
    left.plot(example["grid"], example["before"], "--", label="meta-learned start")
    left.plot(example["grid"], example["after"], "-", label="after 10 steps")
    left.scatter(example["X_support"], example["y_support"], c="C3", zorder=3, label="10-shot support")
    left.set(title="MAML on a new sinusoid", xlabel="x", ylabel="y")
    left.legend(fontsize=8)
    for learner, row in accuracy.iterrows():
        right.plot(row.index, row.to_numpy(), marker="o", label=learner)
    right.set(title="adult, held-out occupations", xlabel="shots per class",
              ylabel="query accuracy", xticks=list(accuracy.columns))
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_demo(*, quick=False, output="skmeta_demo.png", seed=0, log=print):
    """Run the whole demo and return its tables.

    Parameters
    ----------
    quick : bool, default=False
        A smaller run, for a smoke test.
    output : str or Path, default="skmeta_demo.png"
        Where the plot goes.
    seed : int, default=0
    log : callable, default=print

    Returns
    -------
    dict
        ``"adult"`` and ``"sinusoid"`` tables and the ``"plot"`` path.
    """
    accuracy = adult_few_shot(quick=quick, seed=seed, log=log)
    with pd.option_context("display.float_format", "{:.3f}".format, "display.width", 120):
        log("\nadult: query accuracy on held-out occupations (mean over tasks and support draws)")
        log(accuracy.to_string())
        summary, example = sinusoid_adaptation(quick=quick, seed=seed, log=log)
        log("\nsinusoid, 10 shots, 100 fresh tasks:")
        log(summary.to_string())
    path = Path(plot_demo(accuracy, example, output)).resolve()
    log(f"\nplot saved to {path}")
    return {"adult": accuracy, "sinusoid": summary, "plot": path}
