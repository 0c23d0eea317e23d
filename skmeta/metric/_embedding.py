"""What the metric learners share: their embedding, for users to read."""

import numpy as np
import torch


class EmbeddingMixin:
    """``transform``: the rows in the learned embedding where distances are taken."""

    def _embedding(self):
        """The module that embeds rows (``module_`` unless a learner keeps more beside it)."""
        return self.module_

    def transform(self, X):
        """The learned embedding of rows ``X``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_rows, n_features)

        Returns
        -------
        ndarray of shape (n_rows, n_embedding)
            The rows in the space where distances are taken: any sklearn
            estimator fitted on a support set's embedding uses what
            meta-training learned (``n_embedding`` is the last hidden size
            of the default :class:`~skmeta.MLP`).
        """
        self._check_meta_fitted()
        X = self._validate_X(X)
        with self._lock, self._evaluating(), torch.no_grad():
            out = self._embedding()(self._tensor(X)).cpu().numpy().astype(np.float64)
        if not np.isfinite(out).all():
            raise ValueError(
                "The embedding overflowed float32 for some rows (largest feature magnitude "
                f"{float(np.abs(X).max(initial=0)):.3g}); standardise the features, e.g. with "
                "sklearn.preprocessing.StandardScaler."
            )
        return out
