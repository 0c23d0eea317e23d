"""The tagged JSON of a skmeta file, and the binary entries beside it.

JSON holds what it can as itself (None, bools, ints, floats, strings, lists,
dicts with string keys); everything else is a dict with a ``"$type"`` key:

========================  =====================================================
``tuple``, ``set``,       ``"items"``: the elements (``[key, value]`` pairs
``frozenset``, ``dict``,  for ``dict``, used when a key is not a string, and
``ordered_dict``,         ``ordered_dict``); ``history`` is skorch's History
``history``
``numpy.scalar``          ``"dtype"``, ``"value"``
``ndarray``               ``"entry"``: an ``.npy`` file (read with
                          ``allow_pickle=False``)
``object_array``          ``"shape"``, ``"items"`` (e.g. arrays of strings)
``tensor``, ``parameter`` ``"key"`` in the file's safetensors entry, ``"device"``
``numpy.Generator``,      ``"state"``: the bit generator's state
``numpy.RandomState``
``torch.device``,         ``"value"``
``torch.dtype``,
``numpy.dtype``
``global``                ``"module"``, ``"name"``: a class or function
``object``                ``"module"``, ``"name"`` and ``"params"`` (skorch
                          callbacks, rebuilt as ``cls(**params)``) or
                          ``"state"`` (rebuilt as pickle rebuilds an object
                          from its state alone: ``cls.__new__(cls)``, then
                          ``__setstate__`` or the ``__dict__`` updated)
``meta_learner``          ``"params"``, ``"attributes"``, ``"components"``
                          (``state_dict`` of ``module_``, ``optimizer_``, ...)
``skops``                 ``"entry"``: in skops' format, an sklearn estimator
                          holding no meta-learner, a sparse matrix, a numpy
                          array subclass (a masked array)
========================  =====================================================

Only ``global``, ``object`` and ``meta_learner`` name a type to call, and
skops entries list theirs: :meth:`Reader.types` collects them all so that
``load`` can refuse a file before anything is built.
"""

import copy
import copyreg
import inspect
import io
import threading
import warnings
from collections import OrderedDict

import numpy as np
import safetensors.torch
import scipy.sparse
import skops.io
import torch
from sklearn.base import BaseEstimator
from skops.io.exceptions import UntrustedTypesFoundException
from skorch import NeuralNet
from skorch.exceptions import DeviceWarning
from skorch.history import History

from .._base import MetaLearner
from ._trust import import_path, is_trusted, type_path

TAG = "$type"
TENSORS = "tensors.safetensors"

# What a meta-learner's constructor and initialize() rebuild from its parameters
# (skorch's own settings, such as iterator_train, among them): not stored.
_REBUILT = frozenset({
    *inspect.signature(NeuralNet.__init__).parameters, "_params_to_validate",
    "initialized_", "virtual_params_", "init_context_", "callbacks_", "prefixes_",
    "cuda_dependent_attributes_", "_modules", "_criteria", "_optimizers", "device_",
})
_BIT_GENERATORS = ("MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64")
# Attributes of these types belong to one process (a lock guarding adapt): not stored.
_TRANSIENT = (type(threading.Lock()), type(threading.RLock()))


def _holds_meta_learner(value):
    if isinstance(value, MetaLearner):
        return True
    if isinstance(value, BaseEstimator):
        return any(_holds_meta_learner(v) for v in vars(value).values())
    if isinstance(value, dict):
        return any(_holds_meta_learner(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_meta_learner(v) for v in value)
    return False


def _device_here(name):
    """``name``, or the CPU where this machine lacks that device."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        return torch.device("cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        return torch.device("cpu")
    return device


class Writer:
    """Encode a value as tagged JSON, collecting tensors and binary entries.

    Attributes
    ----------
    tensors : dict of str to Tensor
        CPU copies, to go in one safetensors entry.
    entries : dict of str to bytes
        Archive members: ``arrays/<n>.npy`` and ``sklearn/<n>.skops``.
    """

    def __init__(self):
        self.tensors = {}
        self.entries = {}

    def tensors_bytes(self):
        """The safetensors entry of every tensor encoded so far."""
        return safetensors.torch.save(self.tensors)

    def encode(self, value, where):
        """Tagged JSON for ``value``; ``where`` names it in error messages."""
        if value is None or type(value) in (bool, int, float, str):
            return value
        if isinstance(value, np.generic):
            return self._numpy_scalar(value, where)
        if isinstance(value, History):
            return {TAG: "history", "items": self.encode(list(value), where)}
        if type(value) is list:
            return [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if type(value) in (tuple, set, frozenset):
            items = [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
            return {TAG: type(value).__name__, "items": items}
        if type(value) in (dict, OrderedDict):
            return self._dict(value, where)
        if type(value) is np.ndarray:  # subclasses (masked arrays) go to skops
            return self._array(value, where)
        if isinstance(value, torch.Tensor):
            return self._tensor(value)
        if isinstance(value, (torch.device, torch.dtype, np.dtype)):
            return self._simple(value)
        if isinstance(value, np.random.Generator):
            return {TAG: "numpy.Generator", "state": self.encode(value.bit_generator.state, where)}
        if isinstance(value, np.random.RandomState):
            return {TAG: "numpy.RandomState", "state": self.encode(value.get_state(legacy=False), where)}
        if isinstance(value, MetaLearner):
            return self._meta_learner(value, where)
        if isinstance(value, type) or inspect.isroutine(value):
            return {TAG: "global", **self._path(value, where)}
        if isinstance(value, np.ndarray) or scipy.sparse.issparse(value) or (
            isinstance(value, BaseEstimator) and not _holds_meta_learner(value)
        ):
            return self._skops(value, where)
        return self._object(value, where)

    def _numpy_scalar(self, value, where):
        if isinstance(value, (np.bool_, np.integer, np.floating)):
            return {TAG: "numpy.scalar", "dtype": value.dtype.str, "value": value.item()}
        return self._array(np.asarray(value), where) | {"scalar": True}

    def _dict(self, value, where):
        tag = "ordered_dict" if type(value) is OrderedDict else "dict"
        if tag == "dict" and all(type(k) is str for k in value) and TAG not in value:
            return {k: self.encode(v, f"{where}[{k!r}]") for k, v in value.items()}
        items = [[self.encode(k, where), self.encode(v, f"{where}[{k!r}]")] for k, v in value.items()]
        return {TAG: tag, "items": items}

    def _array(self, value, where):
        if value.dtype.hasobject:
            items = [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value.ravel().tolist())]
            return {TAG: "object_array", "shape": list(value.shape), "items": items}
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        return {TAG: "ndarray", "entry": self._add_entry("arrays", "npy", buffer.getvalue())}

    def _tensor(self, value):
        key = str(len(self.tensors))
        self.tensors[key] = value.detach().to("cpu", copy=True).contiguous()
        tag = "parameter" if isinstance(value, torch.nn.Parameter) else "tensor"
        return {TAG: tag, "key": key, "device": str(value.device), "requires_grad": value.requires_grad}

    def _simple(self, value):
        if isinstance(value, torch.device):
            return {TAG: "torch.device", "value": str(value)}
        if isinstance(value, torch.dtype):
            return {TAG: "torch.dtype", "value": str(value).removeprefix("torch.")}
        return {TAG: "numpy.dtype", "value": self.encode(np.lib.format.dtype_to_descr(value), "dtype")}

    def _path(self, value, where):
        module, name = getattr(value, "__module__", None), getattr(value, "__qualname__", "")
        try:
            found = import_path(module, name)
        except (ImportError, AttributeError, TypeError):
            found = None
        if found is not value:
            raise TypeError(
                f"{where} is {value!r}, which cannot be found again by its import path "
                f"{module}.{name} (a lambda, a local class or function, or one defined in "
                "__main__ of another script?); define it at the top level of an importable module."
            )
        return {"module": module, "name": name}

    def _add_entry(self, folder, suffix, data):
        name = f"{folder}/{len(self.entries)}.{suffix}"
        self.entries[name] = data
        return name

    def _skops(self, value, where):
        try:
            data = skops.io.dumps(value)
        except Exception as error:
            raise TypeError(
                f"{where} ({type(value).__name__}) cannot be stored with skops: {error}"
            ) from error
        return {TAG: "skops", "entry": self._add_entry("sklearn", "skops", data)}

    def _object(self, value, where):
        path = self._path(type(value), where)
        if hasattr(value, "get_params") and not isinstance(value, BaseEstimator):
            # skorch callbacks: by their parameters, as clone() copies them; their
            # per-fit state is rebuilt when training resumes.
            params = value.get_params(deep=False)
            return {TAG: "object", **path, "params": self._attributes(params, where)}
        # What pickle would store, when that is an empty object and its state; not
        # objects that pickle rebuilds by calling a function with arguments.
        reduced = value.__reduce_ex__(2)
        if not (reduced[0] is copyreg.__newobj__ and tuple(reduced[1]) == (type(value),)
                and all(part is None for part in reduced[3:])):
            raise TypeError(
                f"{where} is a {type_path(type(value))}, which skmeta.io cannot store: it is not "
                "rebuilt from its attributes alone. Store numbers, strings, lists, dicts, numpy "
                "arrays, tensors, sklearn estimators or objects made of those instead."
            )
        state = reduced[2] if len(reduced) > 2 else None
        if isinstance(state, dict) and all(type(k) is str for k in state) and TAG not in state:
            return {TAG: "object", **path, "state": self._attributes(state, where)}
        return {TAG: "object", **path, "state": self.encode(state, where)}

    def _attributes(self, attributes, where):
        return {
            k: self.encode(v, f"{where}.{k}")
            for k, v in attributes.items() if not isinstance(v, _TRANSIENT)
        }

    def _meta_learner(self, meta, where):
        params = meta.get_params(deep=False)
        rebuilt = set(params) | _REBUILT
        components = None
        if getattr(meta, "initialized_", False):
            components = {}
            for name in [*meta._modules, *meta._criteria, *meta._optimizers]:
                component = getattr(meta, name + "_", None)
                if hasattr(component, "state_dict"):
                    components[name + "_"] = {
                        "state_dict": self.encode(component.state_dict(), f"{where}.{name}_"),
                        "training": getattr(component, "training", None),
                    }
            rebuilt |= set(components)
        # skorch lets torch modules and optimizers be set only in initialize(), which
        # builds them again on load; components_ hold those with learned state.
        attributes = {
            k: v for k, v in vars(meta).items()
            if k not in rebuilt and not isinstance(v, (torch.nn.Module, torch.optim.Optimizer))
        }
        return {
            TAG: "meta_learner",
            **self._path(type(meta), where),
            "params": self._attributes(params, where),
            "attributes": self._attributes(attributes, where),
            "components": components,
        }


class Reader:
    """Decode tagged JSON, reading tensors and entries from an open archive.

    Parameters
    ----------
    archive : zipfile.ZipFile
    accepted : set of str
        The type names that may be imported and called, beside skmeta's classes.
    """

    def __init__(self, archive, accepted):
        self.archive = archive
        self.accepted = accepted
        self._tensors = None

    @property
    def tensors(self):
        """The file's safetensors entry, read on first use."""
        if self._tensors is None:
            self._tensors = safetensors.torch.load(self._entry(TENSORS))
        return self._tensors

    def untrusted(self, node):
        """The types and functions ``node`` would import or call that are not trusted."""
        return {path for path in self.types(node) if not is_trusted(path, self.accepted)}

    def types(self, node):
        """The names of the types and functions ``node`` would import or call."""
        found = set()
        if isinstance(node, list):
            for item in node:
                found |= self.types(item)
        elif isinstance(node, dict):
            tag = node.get(TAG)
            if tag in ("global", "object", "meta_learner"):
                found.add(f"{node['module']}.{node['name']}")
            elif tag == "skops":
                found |= set(skops.io.get_untrusted_types(data=self._entry(node["entry"])))
            for value in node.values():
                found |= self.types(value)
        return found

    def _entry(self, name):
        return self.archive.read(name)

    def decode(self, node):
        """The value tagged JSON ``node`` stands for."""
        if isinstance(node, list):
            return [self.decode(v) for v in node]
        if not isinstance(node, dict):
            return node
        tag = node.get(TAG)
        if tag is None:
            return {k: self.decode(v) for k, v in node.items()}
        decode = getattr(self, "_decode_" + str(tag).replace(".", "_"), None)
        if decode is None:
            raise ValueError(f"Unknown tag {tag!r}: the file is damaged or from a newer skmeta.")
        return decode(node)

    def _items(self, node):
        return [self.decode(v) for v in node["items"]]

    def _pairs(self, node):
        return [(self.decode(k), self.decode(v)) for k, v in node["items"]]

    def _decode_tuple(self, node):
        return tuple(self._items(node))

    def _decode_set(self, node):
        return set(self._items(node))

    def _decode_frozenset(self, node):
        return frozenset(self._items(node))

    def _decode_dict(self, node):
        return dict(self._pairs(node))

    def _decode_ordered_dict(self, node):
        return OrderedDict(self._pairs(node))

    def _decode_history(self, node):
        return History(self.decode(node["items"]))

    def _decode_numpy_scalar(self, node):
        return np.dtype(node["dtype"]).type(node["value"])

    def _decode_ndarray(self, node):
        array = np.load(io.BytesIO(self._entry(node["entry"])), allow_pickle=False)
        return array[()] if node.get("scalar") else array

    def _decode_object_array(self, node):
        array = np.empty(len(node["items"]), dtype=object)
        array[:] = self._items(node)
        return array.reshape(node["shape"])

    def _decode_tensor(self, node):
        tensor = self.tensors[node["key"]].to(_device_here(node["device"]))
        return tensor.requires_grad_(node["requires_grad"])

    def _decode_parameter(self, node):
        tensor = self.tensors[node["key"]].to(_device_here(node["device"]))
        return torch.nn.Parameter(tensor, requires_grad=node["requires_grad"])

    def _decode_torch_device(self, node):
        return torch.device(node["value"])

    def _decode_torch_dtype(self, node):
        dtype = getattr(torch, node["value"])
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"{node['value']!r} is not a torch dtype; the file is damaged.")
        return dtype

    def _decode_numpy_dtype(self, node):
        return np.lib.format.descr_to_dtype(self.decode(node["value"]))

    def _bit_generator(self, state):
        name = state["bit_generator"]
        if name not in _BIT_GENERATORS:
            raise ValueError(f"Unknown numpy bit generator {name!r}; expected one of {_BIT_GENERATORS}.")
        return getattr(np.random, name)()

    def _decode_numpy_Generator(self, node):
        state = self.decode(node["state"])
        bit_generator = self._bit_generator(state)
        bit_generator.state = state
        return np.random.Generator(bit_generator)

    def _decode_numpy_RandomState(self, node):
        state = self.decode(node["state"])
        random_state = np.random.RandomState(self._bit_generator(state))
        random_state.set_state(state)
        return random_state

    def _decode_global(self, node):
        path = f"{node['module']}.{node['name']}"
        if not is_trusted(path, self.accepted):  # load() checks first; this is a second lock
            raise UntrustedTypesFoundException([path])
        return import_path(node["module"], node["name"])

    def _class(self, node, base=object):
        cls = self._decode_global(node)
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise TypeError(
                f"{node['module']}.{node['name']} is not a subclass of {base.__name__}; "
                "the file is damaged or was not written by skmeta.io.dump."
            )
        return cls

    def _decode_skops(self, node):
        data = self._entry(node["entry"])
        trusted = [t for t in skops.io.get_untrusted_types(data=data) if is_trusted(t, self.accepted)]
        return skops.io.loads(data, trusted=trusted)

    def _decode_object(self, node):
        cls = self._class(node)
        if "params" in node:
            return cls(**self.decode(node["params"]))
        obj = cls.__new__(cls)
        state = self.decode(node["state"])
        if hasattr(obj, "__setstate__"):
            obj.__setstate__(state)
            return obj
        if isinstance(state, tuple):  # (__dict__ or None, __slots__ values)
            state, slots = state
            for name, value in slots.items():
                setattr(obj, name, value)
        obj.__dict__.update(state or {})
        return obj

    def _decode_meta_learner(self, node):
        cls = self._class(node, MetaLearner)
        params = self.decode(node["params"])
        device = params.get("device", "auto")
        if str(device) != "auto" and _device_here(device).type != torch.device(device).type:
            warnings.warn(
                f"This {cls.__name__} was fitted with device={device!r}, which this machine "
                "lacks; it is loaded on the CPU (device='cpu').",
                DeviceWarning,
                stacklevel=4,
            )
            params["device"] = "cpu"
        meta = cls(**params)
        attributes = self.decode(node["attributes"])
        if node["components"] is None:
            for name, value in attributes.items():
                setattr(meta, name, value)
            return meta
        for name, value in attributes.items():  # n_features_in_, n_ways_, ... shape the modules
            setattr(meta, name, copy.copy(value))  # a copy: initialize() clears history_
        meta.initialize()
        for name, value in attributes.items():
            setattr(meta, name, value)
        for name, component in node["components"].items():
            target = getattr(meta, name)
            target.load_state_dict(self.decode(component["state_dict"]))
            if component["training"] is not None:
                target.train(component["training"])
        return meta
