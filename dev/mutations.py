"""Mutation testing: plant known bugs in a copy of skmeta and check that the tests catch them.

Usage (from the repository root, in its virtual environment)::

    python dev/mutations.py                    # every mutation
    python dev/mutations.py --only NAME [NAME ...]
    python dev/mutations.py --list             # the mutations, with what they change
    python dev/mutations.py --dry-run          # only check that every snippet is found once
    python dev/mutations.py --jobs 2           # mutations in parallel (one copy each)
    python dev/mutations.py --markdown         # the table as Markdown, for docs/developer.md

Each mutation is a small, plausible mistake in the mathematics: a snippet of
one file (exact text, or a regular expression) and its replacement, with the
test files that should notice it. The repository is copied to a temporary
directory (the working tree is never touched: others may be editing it); in
the copy, each mutation is applied, the test files run with
``python -m pytest -x -q -p no:randomly <files>``, and the file is restored.
A mutation is

- ``caught`` when the tests fail,
- ``SURVIVED`` when they pass (a hole in the tests),
- ``NOT APPLICABLE`` when its snippet is not found exactly once (the code
  moved on: update the snippet), never skipped silently.

The test files first run on the unmutated copy: a failure there is reported
as ``baseline failed`` and makes every result meaningless. The exit status
is 0 only when the baseline passes and every mutation is caught.

This is a developer command, not part of CI: a full run takes several
minutes. docs/developer.md holds the latest results.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IGNORED = shutil.ignore_patterns(
    ".git", ".venv", "venv", "__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache",
    "*.png", "build", "dist",
)


@dataclass(frozen=True)
class Mutation:
    """A planted bug: replace ``old`` by ``new`` in ``file``, then run ``tests``.

    With ``regex=True``, ``old`` is a regular expression (``re.DOTALL``) and
    ``new`` a replacement template (``\\1`` ...).
    """

    name: str
    file: str
    old: str
    new: str
    tests: tuple
    regex: bool = False
    what: str = ""


MUTATIONS = [
    # ----------------------------------------------- the seven of the issue
    Mutation(
        "first_order_ignored", "skmeta/optimization/_maml.py",
        r"first_order=self\.first_order or not training", "first_order=not training",
        ("tests/test_parameters.py", "tests/optimization/test_maml.py"), regex=True,
        what="meta-training is second order whatever first_order says",
    ),
    Mutation(
        "inner_steps_ignored_in_training", "skmeta/optimization/_maml.py",
        r"(def _steps\(self, training\):\n)", r"\1        if training:\n            return 1\n",
        ("tests/test_parameters.py", "tests/optimization/test_maml.py"), regex=True,
        what="meta-training takes one inner step whatever inner_steps says",
    ),
    Mutation(
        "valid_score_constant", "skmeta/_base/_training.py",
        r'record_batch\("valid_score", [^\n]*\)\n', 'record_batch("valid_score", 0.5)\n',
        ("tests/test_parameters.py", "tests/test_base.py"), regex=True,
        what="history's valid_score is 0.5 whatever the validation episodes give",
    ),
    Mutation(
        "preprocessor_does_not_scale", "skmeta/_preprocessing.py",
        '("numeric", StandardScaler(), numeric)', '("numeric", "passthrough", numeric)',
        ("tests/test_preprocessing.py",),
        what="make_task_preprocessor passes numeric columns through unscaled",
    ),
    Mutation(
        "score_queries_n_queries_rows", "skmeta/_base/_adaptation.py",
        r'(def score\(.*?sampler\.sample\([^\n]*query=)"rest"', r'\1"sampled"',
        ("tests/test_parameters.py", "tests/metric/test_protonet.py"), regex=True,
        what="the episodic score queries n_queries sampled rows, not all the other rows",
    ),
    Mutation(
        "adapt_half_inner_lr", "skmeta/optimization/_maml.py",
        r"(def _adapt\(.*?inner_lr=)self\.inner_lr", r"\1self.inner_lr / 2",
        ("tests/optimization/test_maml.py",), regex=True,
        what="MAML's adapt steps by half of inner_lr",
    ),
    Mutation(
        "adapt_permutes_labels", "skmeta/_adapted.py",
        r"(classes, y_encoded = np\.unique\(y, return_inverse=True\)\n)",
        r"\1        y_encoded = (y_encoded + 1) % classes.shape[0]\n",
        ("tests/test_adapted.py",), regex=True,
        what="AdaptedClassifier.fit adapts on permuted labels (k -> k+1 mod n)",
    ),
    # ------------------------------------------------------------- others
    Mutation(
        "adapt_misaligns_labels", "skmeta/_adapted.py",
        r"(classes, y_encoded = np\.unique\(y, return_inverse=True\)\n)",
        r"\1        y_encoded = np.roll(y_encoded, 1)\n",
        ("tests/test_adapted.py",), regex=True,
        what="AdaptedClassifier.fit shifts the labels by one row",
    ),
    Mutation(
        "prototypes_sum_not_mean", "skmeta/metric/_protonet.py",
        r"return sums / [^\n]*\n", "return sums\n",
        ("tests/metric/test_protonet.py", "tests/test_parameters.py"), regex=True,
        what="prototypes are class sums instead of class means",
    ),
    Mutation(
        "prototype_distance_not_squared", "skmeta/metric/_protonet.py",
        "return -squared.clamp_min(0)", "return -squared.clamp_min(0).sqrt()",
        ("tests/metric/test_protonet.py", "tests/test_parameters.py"),
        what="prototypical logits are negative distances, not squared distances",
    ),
    Mutation(
        "softmax_wrong_axis", "skmeta/_adapted.py",
        r"softmax\(([^\n]*), axis=1\)", r"softmax(\1, axis=0)",
        ("tests/test_adapted.py",), regex=True,
        what="predict_proba normalises over query rows instead of classes",
    ),
    Mutation(
        "inner_loop_sign_flipped", "skmeta/optimization/_maml.py",
        "p - inner_lr * grads[name]", "p + inner_lr * grads[name]",
        ("tests/optimization/test_maml.py",),
        what="the inner loop climbs the support loss",
    ),
    Mutation(
        "adapt_steps_ignored", "skmeta/optimization/_maml.py",
        r"(def _steps\(self, training\):\n)", r"\1        return self.inner_steps\n",
        ("tests/optimization/test_maml.py",), regex=True,
        what="adapting takes inner_steps steps whatever adapt_steps says",
    ),
    Mutation(
        "score_ignores_n_shots", "skmeta/_base/_adaptation.py",
        r"(def score\(.*?)self\._sampler\(\)",
        r"\1EpisodeSampler(n_ways=self.n_ways, n_queries=self.n_queries, "
        r"classification=self._classification)",
        ("tests/test_parameters.py", "tests/metric/test_protonet.py"), regex=True,
        what="the episodic score adapts on 5 shots whatever n_shots says",
    ),
    Mutation(
        "random_state_ignored", "skmeta/_base/_tasks.py",
        "rng = check_random_state(self.random_state)", "rng = check_random_state(0)",
        ("tests/test_base.py", "tests/optimization/test_maml.py"),
        what="meta-training is seeded with 0 whatever random_state says",
    ),
    Mutation(
        "meta_batch_size_ignored", "skmeta/_base/_training.py",
        r"meta_batch_size=self\.meta_batch_size, random_state=self\._episode_rng",
        "meta_batch_size=1, random_state=self._episode_rng",
        ("tests/test_parameters.py",), regex=True,
        what="meta-training takes one episode per meta-step",
    ),
    Mutation(
        "n_queries_ignored_in_training", "skmeta/_base/_tasks.py",
        r"(def _sampler\(self.*?n_queries=)self\.n_queries", r"\g<1>15",
        ("tests/test_parameters.py",), regex=True,
        what="episodes hold 15 queries per class whatever n_queries says",
    ),
    Mutation(
        "regression_r2_uses_the_mean_of_predictions", "skmeta/_base/_training.py",
        r"\(y_true - mean\) \*\* 2", "(y_true - y_pred.mean(-1, keepdim=True)) ** 2",
        ("tests/test_parameters.py",), regex=True,
        what="meta-validation R² centres the targets on the predictions' mean",
    ),
]


def _copy_repository(destination):
    shutil.copytree(ROOT, destination, ignore=IGNORED)
    return destination


def _environment(copy):
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(copy)] + [p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    environment.pop("PYTEST_ADDOPTS", None)
    return environment


def _check_imports_from(copy):
    """The copy's skmeta must be the one imported there, not an installed one."""
    out = subprocess.run(
        [sys.executable, "-c", "import skmeta; print(skmeta.__file__)"],
        cwd=copy, env=_environment(copy), capture_output=True, text=True, check=True,
    ).stdout.strip()
    if not Path(out).resolve().is_relative_to(Path(copy).resolve()):
        raise SystemExit(f"In the copy {copy}, skmeta is imported from {out}; cannot test mutations.")


def _run_tests(copy, tests, timeout):
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly",
               "-p", "no:cacheprovider", *tests]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=copy, env=_environment(copy), capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "timed out", time.perf_counter() - start
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", done.stdout, flags=re.M)
    summary = failed[0] if failed else (done.stdout.strip().splitlines() or [""])[-1]
    return done.returncode, summary, time.perf_counter() - start


def _apply(text, mutation):
    """The mutated text, or None with how often the snippet was found."""
    if mutation.regex:
        pattern = re.compile(mutation.old, flags=re.DOTALL)
        count = len(pattern.findall(text))
        return (pattern.sub(mutation.new, text, count=1) if count == 1 else None), count
    count = text.count(mutation.old)
    return (text.replace(mutation.old, mutation.new) if count == 1 else None), count


def run_mutation(mutation, copy, timeout):
    """Apply one mutation in ``copy``, run its tests, and always restore the file."""
    path = Path(copy) / mutation.file
    original = path.read_text()
    mutated, count = _apply(original, mutation)
    if mutated is None:
        return "NOT APPLICABLE", f"snippet found {count} times in {mutation.file}", 0.0
    try:
        path.write_text(mutated)
        returncode, summary, seconds = _run_tests(copy, mutation.tests, timeout)
    finally:
        path.write_text(original)
    if returncode is None:
        return "caught", f"tests {summary}", seconds
    if returncode == 0:
        return "SURVIVED", summary, seconds
    if returncode == 1:
        return "caught", summary, seconds
    return "caught", f"pytest exit status {returncode}: {summary}", seconds


def _table(rows, markdown):
    header = ("mutation", "result", "seconds", "first failing test (or why)")
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|---|---|---|---|"]
        lines += [f"| `{n}` | {r} | {s:.0f} | {d.replace('|', '/')} |" for n, r, s, d in rows]
        return "\n".join(lines)
    width = max(len(n) for n, *_ in rows)
    lines = [f"{header[0]:<{width}}  {header[1]:<15} {header[2]:>7}  {header[3]}"]
    lines += [f"{n:<{width}}  {r:<15} {s:>7.0f}  {d}" for n, r, s, d in rows]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutations")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--dry-run", action="store_true",
                        help="check that each snippet is found exactly once, run no test")
    parser.add_argument("--jobs", type=int, default=1, help="mutations run at once (default 1)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per test run")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)

    mutations = MUTATIONS
    if args.only:
        unknown = sorted(set(args.only) - {m.name for m in MUTATIONS})
        if unknown:
            parser.error(f"unknown mutation(s) {unknown}; see --list")
        mutations = [m for m in MUTATIONS if m.name in args.only]
    if args.list:
        for m in mutations:
            print(f"{m.name:<45} {m.file:<26} {m.what}")
        return 0
    if args.dry_run:
        missing = []
        for m in mutations:
            count = _apply((ROOT / m.file).read_text(), m)[1]
            print(f"{m.name:<45} {'applies' if count == 1 else f'NOT APPLICABLE (found {count} times)'}")
            missing += [m.name] if count != 1 else []
        return 1 if missing else 0

    with tempfile.TemporaryDirectory(prefix="skmeta-mutations-") as tmp:
        copies = [_copy_repository(Path(tmp) / f"copy{i}") for i in range(max(1, args.jobs))]
        _check_imports_from(copies[0])
        tests = sorted({test for m in mutations for test in m.tests})
        print(f"baseline: {' '.join(tests)}", flush=True)
        returncode, summary, seconds = _run_tests(copies[0], tests, args.timeout * 2)
        if returncode != 0:
            print(f"baseline failed ({summary}) after {seconds:.0f} s: the tests must pass "
                  "on the unmutated code first.")
            return 2
        print(f"baseline passed in {seconds:.0f} s", flush=True)

        def work(index_and_mutation):
            index, mutation = index_and_mutation
            copy = copies[index % len(copies)]
            result = run_mutation(mutation, copy, args.timeout)
            print(f"  {mutation.name}: {result[0]} ({result[2]:.0f} s)", flush=True)
            return (mutation.name, *result)

        if len(copies) == 1:
            rows = [work(item) for item in enumerate(mutations)]
        else:
            # One copy per worker: a worker takes the mutations of its own copy.
            groups = [[(i, m) for i, m in enumerate(mutations) if i % len(copies) == j]
                      for j in range(len(copies))]
            with ThreadPoolExecutor(len(copies)) as pool:
                done = pool.map(lambda group: [work(item) for item in group], groups)
            by_name = {row[0]: row for group in done for row in group}
            rows = [by_name[m.name] for m in mutations]

    rows = [(name, result, seconds, detail) for name, result, detail, seconds in rows]
    print()
    print(_table(rows, args.markdown))
    bad = [name for name, result, *_ in rows if result != "caught"]
    print(f"\n{len(rows) - len(bad)} of {len(rows)} caught"
          + (f"; not caught: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
