"""Callbacks for meta-training: skorch's, adjusted to episodes and log files."""

import sys
import time

from skorch.callbacks import ProgressBar as _SkorchProgressBar

__all__ = ["ProgressBar"]


class ProgressBar(_SkorchProgressBar):
    """skorch's progress bar in a terminal; one line per epoch in a log file.

    A tqdm bar redrawn with carriage returns reads well in a terminal but
    fills a log file with one partial line per meta-batch. When the output
    is not a terminal, this callback writes a single line at the end of
    each epoch instead: epoch, meta-batches, the losses and the duration.

    Parameters
    ----------
    batches_per_epoch : int, "auto" or "count", default="auto"
        As in :class:`skorch.callbacks.ProgressBar`; "auto" counts
        meta-batches from ``n_episodes`` and ``meta_batch_size``.
    detect_notebook : bool, default=True
        As in skorch.
    postfix_keys : list of str or None, default=None
        History keys shown; None shows ``train_loss`` and ``valid_loss``.
    file : file-like or None, default=None
        Where the bar or the lines go; None is ``sys.stderr``.

    Examples
    --------
    >>> import io
    >>> from skmeta import ProtoNetClassifier
    >>> from skmeta.callbacks import ProgressBar
    >>> from skmeta.datasets import make_blob_tasks
    >>> log = io.StringIO()  # not a terminal: one line per epoch
    >>> meta = ProtoNetClassifier(max_epochs=2, n_episodes=8, train_split=None, random_state=0,
    ...                           callbacks=[ProgressBar(file=log)])
    >>> meta = meta.fit(make_blob_tasks(n_tasks=6, random_state=0))
    >>> [line.split(",")[0] for line in log.getvalue().splitlines()]
    ['epoch 1/2: 1 meta-batches', 'epoch 2/2: 1 meta-batches']
    """

    def __init__(self, batches_per_epoch="auto", detect_notebook=True, postfix_keys=None, file=None):
        super().__init__(batches_per_epoch=batches_per_epoch, detect_notebook=detect_notebook,
                         postfix_keys=postfix_keys)
        self.file = file

    def _stream(self):
        return self.file if self.file is not None else sys.stderr

    def _is_terminal(self):
        isatty = getattr(self._stream(), "isatty", None)
        return bool(isatty and isatty()) or self._use_notebook()

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        self.started_ = time.perf_counter()
        if self._is_terminal():
            import tqdm

            super().on_epoch_begin(net, dataset_train=dataset_train, dataset_valid=dataset_valid, **kwargs)
            if not self._use_notebook():  # skorch's bar writes to stderr; honour file
                self.pbar_.close()
                self.pbar_ = tqdm.tqdm(total=self.pbar_.total, leave=False, file=self._stream())
        else:
            self.pbar_ = None

    def on_batch_end(self, net, **kwargs):
        if self.pbar_ is not None:
            super().on_batch_end(net, **kwargs)

    def on_epoch_end(self, net, **kwargs):
        if self.pbar_ is not None:
            super().on_epoch_end(net, **kwargs)
            return
        row = net.history[-1]
        n_batches = sum(1 for batch in row["batches"] if "train_loss" in batch)
        shown = "".join(f", {key} {row[key]:.4f}" for key in self.postfix_keys if key in row)
        self._stream().write(
            f"epoch {row['epoch']}/{net.max_epochs}: {n_batches} meta-batches{shown}, "
            f"{time.perf_counter() - self.started_:.1f} s\n"
        )
        self._stream().flush()
