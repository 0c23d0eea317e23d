"""Settings for every test run from the repository: tests, and the doctests of skmeta and benchmarks."""

import torch

# The models of tests and examples are tiny: a second intra-op thread makes
# nothing faster, and on a busy machine its threads wait on each other
# (10-100x slower seen here, in the doctests as in the tests).
torch.set_num_threads(1)

# Run by the python of a separate environment that has learn2learn (see
# benchmarks/peers.py); it cannot be imported here to collect its doctests.
collect_ignore = ["benchmarks/_learn2learn_peer.py"]
