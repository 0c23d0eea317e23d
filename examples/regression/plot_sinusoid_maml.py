"""
MAML on sinusoids
=================

The regression family of the MAML paper: each task is a sine wave with its
own amplitude and phase. MAML meta-learns a starting point from which ten
points and a few gradient steps recover a new wave.
"""

# %%
import numpy as np

from skmeta import MAMLRegressor
from skmeta.datasets import make_sinusoid_tasks

tasks = make_sinusoid_tasks(500, random_state=0)
maml = MAMLRegressor(
    inner_lr=0.01, lr=1e-3, adapt_steps=10, n_shots=10, n_queries=10, meta_batch_size=25,
    standardize_targets=False,
    n_episodes=500, max_epochs=10, random_state=0,
).fit(tasks)

# %%
# Adapt to fresh waves from 10 points; compare with the meta-learned start.
fresh = make_sinusoid_tasks(50, n_rows=110, random_state=1)
before, after = [], []
for task in fresh:
    X_s, y_s, X_q, y_q = task.X[:10], task.y[:10], task.X[10:], task.y[10:]
    after.append(np.mean((maml.adapt(X_s, y_s).predict(X_q) - y_q) ** 2))
    start = maml.set_params(adapt_steps=0).adapt(X_s, y_s)
    before.append(np.mean((start.predict(X_q) - y_q) ** 2))
    maml.set_params(adapt_steps=10)
print(f"query MSE before adapting {np.mean(before):.2f}, after {np.mean(after):.2f}")
