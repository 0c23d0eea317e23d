"""Tasks: validating a task collection, and remembering what was trained on.

:class:`TasksMixin` turns what ``fit``/``score`` are given (a task
collection or a long-format DataFrame) into validated tasks that can give
episodes, and sets the fitted state (``n_features_in_``, ``n_ways_``, the
random streams) once every check has passed.
"""

import warnings

import numpy as np
import pandas as pd
from sklearn.utils import check_random_state

from .._validation import as_task_collection, check_long_format, check_task_collection, resolve_device
from ..tasks import EpisodeSampler, TaskCollection
from ..utils._stacklevel import external_stacklevel


class _CheckedTasks(TaskCollection):
    """A task collection whose tasks already passed validation."""


class TasksMixin:
    """From raw input to validated tasks, and the fitted state they set."""

    def _sampler(self):
        return EpisodeSampler(
            n_ways=self.n_ways,
            n_shots=self.n_shots,
            n_queries=self.n_queries,
            classification=self._classification,
            strict=self.strict_episodes,
            class_balance=self.class_balance,
        )

    def _validated_tasks(self, X, y=None):
        """Every task of ``X`` validated: (tasks, n_features, feature_names, long_format)."""
        if isinstance(X, pd.DataFrame):
            return (*check_long_format(X, y, task_column=self.task_column,
                                       classification=self._classification), True)
        tasks = as_task_collection(X, y, task_column=self.task_column)
        return (*check_task_collection(tasks, classification=self._classification), False)

    def _usable_tasks(self, tasks, purpose):
        """The tasks that can give an episode; one warning names the others."""
        sampler = self._sampler()
        usable, reasons = [], []
        for task in tasks:
            reason = sampler.why_not(task.y, task=task.name)
            if reason is None:
                usable.append(task)
            else:
                reasons.append(reason)
        if not reasons:
            return tasks
        fix = (" Lower n_shots or n_queries, or set strict_episodes=False." if self.strict_episodes
               else "")
        if self.strict_episodes or not usable:
            count = "None of the" if not usable else f"{len(reasons)} of the"
            verb = "can" if not usable else "cannot"
            raise ValueError(
                f"{count} {len(tasks)} tasks {verb} give an episode for {purpose}: {reasons[0]}"
                f"{f' (and {len(reasons) - 1} more)' if len(reasons) > 1 else ''}.{fix}"
            )
        shown = "; ".join(reasons[:5]) + ("; ..." if len(reasons) > 5 else "")
        warnings.warn(
            f"{len(reasons)} of {len(tasks)} tasks cannot give an episode and are left out "
            f"of {purpose}: {shown}.",
            UserWarning,
            stacklevel=external_stacklevel(),
        )
        return TaskCollection(usable)

    def _check_tasks(self, X, y=None, *, purpose="meta-training"):
        tasks, n_features, feature_names, long_format = self._validated_tasks(X, y)
        tasks = self._usable_tasks(tasks, purpose)
        sampler = self._sampler()
        ways = None
        if self._classification:
            # A list, not a dict by name: two tasks may share a name.
            per_task = [(task.name, sampler.ways(task.y)) for task in tasks]
            if len({w for _, w in per_task}) > 1:
                shown = ", ".join(f"{name!r}: {w}" for name, w in per_task[:10])
                raise ValueError(
                    f"Tasks have different numbers of classes ({shown}"
                    f"{', ...' if len(per_task) > 10 else ''}); episodes of "
                    "one meta-batch must share a shape. Set n_ways to the number of "
                    "classes each episode should draw."
                )
            ways = per_task[0][1]
        return _CheckedTasks(tasks), n_features, feature_names, ways, long_format

    def _check_fitted_width(self, n_features, feature_names, what="The tasks"):
        if n_features != self.n_features_in_:
            raise ValueError(
                f"{what} have {n_features} features, but {type(self).__name__} was "
                f"meta-trained on {self.n_features_in_}; pass the same columns."
            )
        fitted = getattr(self, "feature_names_in_", None)
        if fitted is not None and feature_names is not None and list(fitted) != list(feature_names):
            raise ValueError(
                f"{what} have other feature names than {type(self).__name__} was "
                f"meta-trained on ({list(fitted)[:5]}...); pass the same columns in the same order."
            )

    def _prepare_fit(self, X, y, *, reset):
        tasks, n_features, feature_names, ways, long_format = self._check_tasks(X, y)
        if not reset:
            self._check_fitted_width(n_features, feature_names)
            if self._classification and ways != self.n_ways_:
                raise ValueError(
                    f"These tasks give {ways}-way episodes but the model was "
                    f"meta-trained on {self.n_ways_}-way ones; set n_ways={self.n_ways_}."
                )
            self._seen_tasks = self._seen_tasks.union(_TaskFingerprint(tasks, long_format=long_format))
            self.__dict__["_stage_tasks"] = tasks
            return self._begin_stage(tasks, reset=False)
        resolve_device(self.device)  # raises now, not after fitted state is replaced
        # All checks passed: only now is fitted state replaced.
        self.n_features_in_ = n_features
        if feature_names is not None:
            self.feature_names_in_ = feature_names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        if self._classification:
            self.n_ways_ = ways
        self._seen_tasks = _TaskFingerprint(tasks, long_format=long_format)
        self._pooled_target_scale = _pooled_target_scale(tasks, self._classification)
        rng = check_random_state(self.random_state)
        self._torch_seed = int(rng.randint(np.iinfo(np.int32).max))
        self._episode_rng = np.random.default_rng(rng.randint(np.iinfo(np.int32).max))
        self._valid_seed = int(rng.randint(np.iinfo(np.int32).max))
        self._training_rng = np.random.default_rng(rng.randint(np.iinfo(np.int32).max))
        self.__dict__["_stage_tasks"] = tasks
        return self._begin_stage(tasks, reset=True)


def _pooled_target_scale(tasks, classification):
    """The root mean within-task variance of regression targets (1 if none)."""
    if classification:
        return 1.0
    variances = [float(np.var(task.y, dtype=np.float64)) for task in tasks if task.n_rows > 1]
    scale = float(np.sqrt(np.mean(variances))) if variances else 0.0
    return scale if np.isfinite(scale) and scale > 0 else 1.0


class _TaskFingerprint:
    """What a learner was meta-trained on, to tell when it is scored on it again.

    Long-format task ids (the values of the task column) are remembered as
    they are: scoring another slice of the same ids is leakage even on other
    rows (a row-wise split). Rows of any task are remembered by a 64-bit hash,
    and a scored task more than half of whose rows were trained on is seen.
    """

    def __init__(self, tasks=(), *, long_format=False):
        self.ids = {task.name for task in tasks} if long_format else set()
        hashes = [_row_hashes(task.X) for task in tasks]
        self.hashes = np.unique(np.concatenate(hashes)) if hashes else np.empty(0, np.uint64)

    def union(self, other):
        merged = _TaskFingerprint()
        merged.ids = self.ids | other.ids
        merged.hashes = np.union1d(self.hashes, other.hashes)
        return merged

    def overlap(self, tasks, *, long_format):
        """Names of ``tasks`` that were meta-trained on."""
        seen = []
        for task in tasks:
            if long_format and task.name in self.ids:
                seen.append(task.name)
                continue
            try:
                hashes = _row_hashes(task.X)
            except (TypeError, ValueError):  # raw rows, before a pipeline encodes them
                continue
            if hashes.size and np.isin(hashes, self.hashes).mean() > 0.5:
                seen.append(task.name)
        return seen


def _row_hashes(X):
    """One 64-bit hash per row of a float32 array."""
    words = np.ascontiguousarray(X, dtype=np.float32).view(np.uint32).astype(np.uint64)
    with np.errstate(over="ignore"):
        multipliers = np.uint64(0x9E3779B97F4A7C15) * (np.arange(words.shape[1], dtype=np.uint64) * 2 + 1)
        mixed = (words + np.uint64(1)) * multipliers
        return np.bitwise_xor.reduce(mixed ^ (mixed >> np.uint64(29)), axis=1) if words.shape[1] else (
            np.zeros(words.shape[0], np.uint64))
