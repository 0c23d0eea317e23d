"""Safe model files: store and load estimators without pickle.

``pickle`` and ``joblib`` files run code while they load: never load one
from a source you do not trust. A file of :func:`dump` is a zip archive
that holds data only, and :func:`load` builds nothing from it until every
type it names is known to be safe:

- ``skmeta.json``: the format version, the versions of skmeta and its
  dependencies, and the estimator as tagged JSON: its class by import path,
  its ``get_params(deep=False)`` and its fitted attributes (see
  ``skmeta/io/_encoding.py`` for the tags);
- ``tensors.safetensors``: every tensor (module weights, optimizer state,
  an adapted estimator's ``state_``), in the safetensors format;
- ``arrays/<n>.npy``: numpy arrays, read with ``allow_pickle=False``;
- ``sklearn/<n>.skops``: sklearn objects that hold no meta-learner (the
  preprocessing steps of a ``Pipeline``), in skops' format.
"""

import json
import os
import zipfile

import numpy as np
import sklearn
import skorch
import torch
from skops.io.exceptions import UntrustedTypesFoundException

from ._encoding import TENSORS, Reader, Writer
from ._trust import default_trusted, type_path

__all__ = ["dump", "get_untrusted_types", "load"]

FORMAT = "skmeta.io"
FORMAT_VERSION = 1
_MANIFEST = "skmeta.json"


def dump(estimator, file):
    """Store a meta-learner, an adapted estimator or a Pipeline in a file.

    Parameters
    ----------
    estimator : object
        A meta-learner (fitted or not), what its ``adapt`` returns, or an
        sklearn estimator holding them, such as a ``Pipeline`` whose last
        step is one; any sklearn estimator that skops can store works too.
        Fitted attributes may be numbers, strings, lists, tuples, dicts and
        sets of those, numpy arrays and random generators, torch tensors,
        classes and functions importable by name, and sklearn estimators.
    file : str, path-like or binary file object
        Where to write; ``.skmeta`` is a good suffix.

    Raises
    ------
    TypeError
        If a parameter or attribute is of a type the format cannot hold
        (a lambda, a local class, an object that pickle would rebuild by
        calling a function); the message names it.

    See Also
    --------
    load : Read the file back.

    Notes
    -----
    Preserved exactly: parameters, fitted attributes, module weights and
    buffers, the train/eval mode of each module, the optimizer's state
    (moments, step counts, learning rates), ``history_`` and the random
    generators of episodes and training, so that ``partial_fit`` on the
    loaded estimator continues exactly as it would have on the original.
    Callbacks are stored by their parameters, as ``clone`` would copy them:
    their per-run state (EarlyStopping's count of epochs without
    improvement, a scheduler's position) is rebuilt when training resumes,
    as skorch's ``on_train_begin`` rebuilds it anyway. Tensors return to the
    device they were on, or to the CPU where that device is missing.

    Examples
    --------
    >>> import os, tempfile
    >>> from skmeta import ProtoNetClassifier
    >>> from skmeta.datasets import make_blob_tasks
    >>> from skmeta.io import dump, load
    >>> tasks = make_blob_tasks(n_tasks=6, random_state=0)
    >>> meta = ProtoNetClassifier(max_epochs=1, n_episodes=8, random_state=0,
    ...                           module__hidden_sizes=(8,)).fit(tasks)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "protonet.skmeta")
    ...     dump(meta, path)
    ...     loaded = load(path)
    >>> X, y = tasks[0].X, tasks[0].y
    >>> bool((loaded.predict(X, X, y) == meta.predict(X, X, y)).all())
    True
    """
    writer = Writer()
    root = writer.encode(estimator, where=type(estimator).__name__)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": {
            "skmeta": _skmeta_version(),
            "torch": torch.__version__,
            "skorch": skorch.__version__,
            "sklearn": sklearn.__version__,
            "numpy": np.__version__,
        },
        "estimator": root,
    }
    with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(_MANIFEST, json.dumps(manifest, indent=1))
        archive.writestr(TENSORS, writer.tensors_bytes())
        for name, data in writer.entries.items():
            archive.writestr(name, data)


def load(file, *, trusted=None):
    """Load an estimator from a file written by :func:`dump`.

    Nothing is imported or built before every type the file names has been
    checked: a file naming any type beyond skmeta's allowlist is refused,
    unless that type is in ``trusted``.

    Parameters
    ----------
    file : str, path-like or binary file object
        A file written by :func:`dump`.
    trusted : list of str or type, default=None
        Types to accept beyond the allowlist (skmeta's public classes,
        torch's layers, losses, optimizers and schedulers, skorch's
        callbacks that write no files, sklearn's ``Pipeline`` and
        ``FrozenEstimator``, and what skops trusts). Name them as
        :func:`get_untrusted_types` and the error list them, after reading
        that list: a type accepted here may run its code while loading.

    Returns
    -------
    object
        The estimator, as it was when dumped.

    Raises
    ------
    ValueError
        If ``file`` was not written by :func:`dump`, or by a newer version
        of skmeta.
    skops.io.exceptions.UntrustedTypesFoundException
        A ``TypeError``: the file names types that are neither on the
        allowlist nor in ``trusted``; the message lists them.

    See Also
    --------
    dump : Write the file.
    get_untrusted_types : The types ``load`` would refuse.

    Examples
    --------
    >>> import os, tempfile
    >>> from skmeta import ProtoNetClassifier
    >>> from skmeta.datasets import make_blob_tasks
    >>> from skmeta.io import dump, load
    >>> tasks = make_blob_tasks(n_tasks=6, random_state=0)
    >>> meta = ProtoNetClassifier(max_epochs=1, n_episodes=8, random_state=0,
    ...                           module__hidden_sizes=(8,)).fit(tasks)
    >>> task = tasks[0]
    >>> adapted = meta.adapt(task.X[:10], task.y[:10])
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "adapted.skmeta")
    ...     dump(adapted, path)
    ...     loaded = load(path)
    >>> bool((loaded.predict_proba(task.X) == adapted.predict_proba(task.X)).all())
    True
    """
    accepted = default_trusted() | _trusted_names(trusted)
    with _open(file) as archive:
        manifest = _manifest(archive, file)
        reader = Reader(archive, accepted)
        try:
            untrusted = sorted(reader.untrusted(manifest["estimator"]))
            if untrusted:
                raise _untrusted_error(file, untrusted)
            return reader.decode(manifest["estimator"])
        except KeyError as error:
            raise ValueError(f"{_name(file)} is damaged: {error} is missing.") from error


def get_untrusted_types(file):
    """The types in a file that :func:`load` accepts only when trusted.

    Parameters
    ----------
    file : str, path-like or binary file object
        A file written by :func:`dump`.

    Returns
    -------
    list of str
        Sorted; empty for a file of skmeta estimators and sklearn
        preprocessing.

    Examples
    --------
    >>> import io
    >>> from skmeta import ProtoNetClassifier
    >>> from skmeta.io import dump, get_untrusted_types
    >>> buffer = io.BytesIO()
    >>> dump(ProtoNetClassifier(), buffer)
    >>> get_untrusted_types(buffer)
    []
    """
    with _open(file) as archive:
        manifest = _manifest(archive, file)
        return sorted(Reader(archive, default_trusted()).untrusted(manifest["estimator"]))


def _skmeta_version():
    import skmeta

    return skmeta.__version__


def _name(file):
    return repr(os.fspath(file)) if isinstance(file, (str, os.PathLike)) else f"The {type(file).__name__}"


def _untrusted_error(file, untrusted):
    error = UntrustedTypesFoundException(untrusted)
    error.args = (
        f"{_name(file)} names types that skmeta does not trust by default: {untrusted}. "
        "Loading would import them and may run their code. If you made this file or trust "
        "its source, check that list and pass it as load(file, trusted=[...])."
        + "".join(error.args[0].partition("\n\n")[1:]),  # skops' notes on risky types
    )
    return error


def _trusted_names(trusted):
    if trusted is None:
        return set()
    if isinstance(trusted, (str, type)) or not hasattr(trusted, "__iter__"):
        raise TypeError(
            f"trusted must be a list of type names or types; got {trusted!r}. Pass e.g. "
            "trusted=get_untrusted_types(file), after reading that list."
        )
    return {t if isinstance(t, str) else type_path(t) for t in trusted}


def _open(file):
    if hasattr(file, "seek"):
        file.seek(0)
    if not zipfile.is_zipfile(file):
        raise ValueError(
            f"{_name(file)} is not a file written by skmeta.io.dump: it is not a zip archive. "
            "If it is a pickle or joblib file, load it only if you trust its source, since "
            "loading one runs any code it holds."
        )
    return zipfile.ZipFile(file)


def _manifest(archive, file):
    try:
        manifest = json.loads(archive.read(_MANIFEST))
    except KeyError:
        manifest = None
    except ValueError as error:
        raise ValueError(f"{_name(file)} has an unreadable {_MANIFEST}: {error}.") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "estimator" not in manifest:
        raise ValueError(
            f"{_name(file)} is not a file written by skmeta.io.dump: it is a zip archive "
            f"without a {_MANIFEST} of format {FORMAT!r}."
        )
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{_name(file)} has format version {version!r}, but this skmeta "
            f"({_skmeta_version()}) reads versions up to {FORMAT_VERSION}; upgrade skmeta "
            f"(the file was written by skmeta {manifest.get('versions', {}).get('skmeta')})."
        )
    return manifest
