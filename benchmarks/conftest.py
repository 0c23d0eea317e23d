"""Collection settings for the doctests of the benchmarks."""

# Run by the python of a separate environment that has learn2learn (see
# benchmarks/peers.py); it cannot be imported here to collect its doctests.
collect_ignore = ["_learn2learn_peer.py"]
