"""Command line: ``skmeta demo`` (or ``python -m skmeta demo``)."""

import argparse
import sys


def main(argv=None):
    """Entry point of the ``skmeta`` command.

    Parameters
    ----------
    argv : list of str or None
        Arguments; None reads ``sys.argv``.

    Returns
    -------
    int
        The exit status.
    """
    parser = argparse.ArgumentParser(prog="skmeta", description="scikit-learn compatible meta-learning.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="meta-train on adult occupations and sinusoids, adapt to new tasks, print and plot",
    )
    demo.add_argument("--quick", action="store_true", help="a small run, for a smoke test")
    demo.add_argument("--output", default="skmeta_demo.png", help="where to save the plot")
    demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from ._demo import run_demo

    run_demo(quick=args.quick, output=args.output, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
