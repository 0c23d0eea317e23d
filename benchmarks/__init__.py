"""skmeta's benchmark suite: ``python -m benchmarks run [NAME ...] [--quick]``.

Each benchmark is a module with a ``NAME``, a ``run(quick=...)`` that returns
its configuration and figures, and a ``report(result, plot_dir)`` that turns
a stored result into a section of ``docs/benchmarks.md``.
"""
