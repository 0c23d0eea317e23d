"""Meta-train with learn2learn on given weights and episodes, and time it.

Run by :mod:`benchmarks.peers` with the python of a virtual environment
that has learn2learn (it does not import skmeta)::

    python benchmarks/_learn2learn_peer.py

reads the path of a run's specification on each line of its input and
answers each with one line of JSON, so that one process serves every run
of a benchmark. A specification (``torch.save``) holds ``layers`` (a list of ``("linear", weight,
bias)`` and ``("relu",)``), ``episodes`` (a list of meta-batches, each a
tuple ``(X_support, y_support, X_query, y_query)`` with a leading episode
axis), ``algorithm`` ("maml" or "protonet"), ``task`` ("regression" or
"classification"), ``first_order``, ``steps``, ``inner_lr``, ``lr``,
``n_warmup``, ``n_threads`` and ``n_losses``. The first ``n_warmup``
meta-batches train a copy of the network, untimed; the network then starts
again from the given weights and meta-trains on the other meta-batches,
timed. The answer has ``seconds`` (the timed loop only: start-up and
imports excluded) and the first ``n_losses`` meta-batch losses.

The loops are learn2learn's documented usage: ``MAML(model, lr,
first_order)``, then per task ``clone()`` and ``adapt(loss)``; for
prototypical networks, ``learn2learn.nn.PrototypicalClassifier`` per
episode.
"""

import copy
import json
import sys
import time

import learn2learn as l2l
import torch
from torch.nn.functional import cross_entropy, mse_loss


def network(layers):
    """A ``torch.nn.Sequential`` of the given linear layers and ReLUs."""
    modules = []
    for layer in layers:
        if layer[0] == "relu":
            modules.append(torch.nn.ReLU())
            continue
        _, weight, bias = layer
        linear = torch.nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            linear.weight.copy_(weight)
            linear.bias.copy_(bias)
        modules.append(linear)
    return torch.nn.Sequential(*modules)


def maml_steps(model, episodes, spec):
    """MAML meta-training as learn2learn's examples write it; the losses."""
    if spec["task"] == "regression":
        def loss_fn(output, y):
            return mse_loss(output.squeeze(-1), y)
    else:
        loss_fn = cross_entropy
    maml = l2l.algorithms.MAML(model, lr=spec["inner_lr"], first_order=spec["first_order"])
    optimizer = torch.optim.Adam(maml.parameters(), lr=spec["lr"])
    losses = []
    for X_support, y_support, X_query, y_query in episodes:
        optimizer.zero_grad()
        total = 0.0
        for i in range(X_support.shape[0]):
            learner = maml.clone()
            for _ in range(spec["steps"]):
                learner.adapt(loss_fn(learner(X_support[i]), y_support[i]))
            total = total + loss_fn(learner(X_query[i]), y_query[i])
        loss = total / X_support.shape[0]
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def protonet_steps(model, episodes, spec):
    """Prototypical-network meta-training with learn2learn's classifier; the losses."""
    optimizer = torch.optim.Adam(model.parameters(), lr=spec["lr"])
    classifier = l2l.nn.PrototypicalClassifier(distance="euclidean")
    losses = []
    for X_support, y_support, X_query, y_query in episodes:
        optimizer.zero_grad()
        total = 0.0
        for i in range(X_support.shape[0]):
            classifier.fit_(model(X_support[i]), y_support[i])
            total = total + cross_entropy(classifier(model(X_query[i])), y_query[i])
        loss = total / X_support.shape[0]
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def run(source):
    """Meta-train as ``source`` specifies; the answer, as a dict."""
    spec = torch.load(source, weights_only=False)
    torch.set_num_threads(spec["n_threads"])
    train = maml_steps if spec["algorithm"] == "maml" else protonet_steps
    warmup, timed = spec["episodes"][:spec["n_warmup"]], spec["episodes"][spec["n_warmup"]:]
    model = network(spec["layers"])
    train(copy.deepcopy(model), warmup, spec)
    start = time.perf_counter()
    losses = train(model, timed, spec)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "losses": losses[:spec["n_losses"]], "version": l2l.__version__}


if __name__ == "__main__":
    for line in sys.stdin:
        print(json.dumps(run(line.strip())), flush=True)
