"""Read PyTorch checkpoints (``torch.save``) into numpy arrays without importing torch.

Interface (shared with the ONNX engine/pipeline, keep it stable):

* ``load_state_dict(path) -> dict[str, np.ndarray]``: a flat ``name -> array`` mapping (a
  checkpoint that wraps it as ``{"state_dict": ...}`` or ``{"model": ...}`` is unwrapped).
* ``load_checkpoint(path) -> Any``: the whole unpickled object tree (dicts, lists, tuples,
  numbers, strings, arrays), for checkpoints that carry more than a state dict.
* ``UnsafeCheckpointError`` (a ``ValueError``): the pickle names a global outside the allow-list
  or is otherwise malformed; nothing from the file has been executed.

Formats: the zip format of ``torch.save`` since 1.6 (``<name>/data.pkl`` plus one raw entry
``<name>/data/<key>`` per storage, ``<name>/byteorder`` little or big) and the legacy
pre-1.6 stream (magic number, protocol, sys-info pickles, the object pickle, the storage key
list, then ``int64 numel + raw bytes`` per storage). The old tar format is refused.

Security: ``pickle`` is unpickled with ``find_class`` restricted to exactly
``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter`` and the
``torch.*Storage`` classes, which only serve as dtype markers; each is mapped to a local,
torch-free replacement. Any other global (``os.system``, ``builtins.eval``, ``torch.nn.Module``,
…) raises before it can be called. Tensor views are bounds-checked against their storage
(no out-of-range strided reads, no stride-0 blow-ups), storage sizes are checked against the zip
entries before they are read, ``data.pkl`` is capped at 256 MiB, and every tensor is returned as
its own contiguous, writeable, native-endian copy (bfloat16 is widened to float32, since numpy
has no bfloat16).
"""

from __future__ import annotations

import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = ["UnsafeCheckpointError", "load_checkpoint", "load_state_dict"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_MAX_PICKLE_BYTES = 256 * 1024 * 1024  # data.pkl of a state dict is kilobytes; refuse absurd ones


class UnsafeCheckpointError(ValueError):
    """The checkpoint is not a plain tensor pickle (forbidden global, bad structure, bad sizes)."""


def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    return (raw.astype(np.uint32) << 16).view(np.float32)


class _Frozen:
    """Base of the objects ``find_class`` hands to the pickle: a ``BUILD`` opcode cannot alter them
    (no ``__dict__``, no attribute assignment), so one file cannot tamper with later loads."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise UnsafeCheckpointError(f"checkpoint pickle tries to modify the loader ({name!r})")

    def __delattr__(self, name: str) -> None:
        raise UnsafeCheckpointError(f"checkpoint pickle tries to modify the loader ({name!r})")


class _StorageType(_Frozen):
    """Stand-in for ``torch.<X>Storage``: only carries the element dtype."""

    __slots__ = ("convert", "dtype", "name")
    name: str
    dtype: np.dtype[Any]
    convert: Callable[[np.ndarray], np.ndarray] | None

    def __init__(
        self, name: str, dtype: np.dtype[Any], convert: Callable[[np.ndarray], np.ndarray] | None
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "convert", convert)

    def __repr__(self) -> str:
        return f"<storage type {self.name}>"


class _AllowedCall(_Frozen):
    """An allowed callable (``REDUCE`` target), wrapped so that it cannot be modified either."""

    __slots__ = ("fn", "name")
    name: str
    fn: Callable[..., Any]

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "fn", fn)

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)


_STORAGE_TYPES: dict[str, _StorageType] = {
    name: _StorageType(name, np.dtype(dtype), convert)
    for name, dtype, convert in (
        ("FloatStorage", "<f4", None),
        ("DoubleStorage", "<f8", None),
        ("HalfStorage", "<f2", None),
        ("BFloat16Storage", "<u2", _bf16_to_f32),
        ("LongStorage", "<i8", None),
        ("IntStorage", "<i4", None),
        ("ShortStorage", "<i2", None),
        ("CharStorage", "<i1", None),
        ("ByteStorage", "<u1", None),
        ("BoolStorage", "?", None),
        ("ComplexFloatStorage", "<c8", None),
        ("ComplexDoubleStorage", "<c16", None),
        ("UInt16Storage", "<u2", None),
        ("UInt32Storage", "<u4", None),
        ("UInt64Storage", "<u8", None),
    )
}


class _Storage:
    """A loaded (or, in the legacy format, still pending) flat storage."""

    def __init__(self, stype: _StorageType, key: str, numel: int) -> None:
        self.stype = stype
        self.key = key
        self.numel = numel
        self.data: np.ndarray | None = None


class _PendingTensor:
    """A tensor whose storage bytes come later in the stream (legacy format)."""

    def __init__(
        self, storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]
    ) -> None:
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple) or not all(type(v) is int for v in value):
        raise UnsafeCheckpointError(f"tensor {what} must be a tuple of ints, got {value!r:.80}")
    return value


def _materialise(
    storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]
) -> np.ndarray:
    flat = storage.data
    if flat is None:
        raise UnsafeCheckpointError(f"storage {storage.key!r} was never written")
    numel = int(np.prod(size, dtype=np.int64)) if size else 1
    if numel == 0:
        out = np.zeros(size, dtype=flat.dtype)
    else:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if offset < 0 or any(s < 0 for s in stride) or last >= flat.shape[0]:
            raise UnsafeCheckpointError(
                f"tensor view (offset {offset}, size {size}, stride {stride}) exceeds its storage of "
                f"{flat.shape[0]} elements"
            )
        if numel > flat.shape[0]:
            raise UnsafeCheckpointError(
                f"tensor of {numel} elements overlaps itself in a storage of {flat.shape[0]}"
            )
        item = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=size, strides=tuple(s * item for s in stride), writeable=False
        )
        out = np.array(view, dtype=flat.dtype.newbyteorder("="), order="C")
    if storage.stype.convert is not None:
        out = storage.stype.convert(out)
    return out


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> np.ndarray | _PendingTensor:
    if not isinstance(storage, _Storage):
        raise UnsafeCheckpointError("tensor rebuilt from something that is not a storage")
    if type(storage_offset) is not int:
        raise UnsafeCheckpointError("tensor storage offset must be an int")
    size_t = _int_tuple(size, "size")
    stride_t = _int_tuple(stride, "stride")
    if len(size_t) != len(stride_t) or any(n < 0 for n in size_t):
        raise UnsafeCheckpointError(f"bad tensor size/stride {size_t}/{stride_t}")
    if storage.data is None:
        return _PendingTensor(storage, storage_offset, size_t, stride_t)
    return _materialise(storage, storage_offset, size_t, stride_t)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> Any:
    if not isinstance(data, np.ndarray | _PendingTensor):
        raise UnsafeCheckpointError("parameter rebuilt from something that is not a tensor")
    return data


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _AllowedCall("OrderedDict", OrderedDict),
    ("torch._utils", "_rebuild_tensor_v2"): _AllowedCall("_rebuild_tensor_v2", _rebuild_tensor_v2),
    ("torch._utils", "_rebuild_parameter"): _AllowedCall("_rebuild_parameter", _rebuild_parameter),
    **{("torch", name): stype for name, stype in _STORAGE_TYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """``find_class`` limited to ``_ALLOWED``; ``persistent_load`` yields ``_Storage`` objects."""

    def __init__(
        self, file: IO[bytes], storage_loader: Callable[[_Storage], None] | None, byteorder: str
    ) -> None:
        super().__init__(file)
        self._storage_loader = storage_loader
        self._byteorder = byteorder
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"checkpoint pickle refers to {module}.{name}, which is not a tensor type; refusing to load it"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise UnsafeCheckpointError(f"unsupported persistent id {pid!r:.80}")
        stype, key, numel = pid[1], pid[2], pid[4]
        if not isinstance(stype, _StorageType):
            raise UnsafeCheckpointError("persistent storage without a storage type")
        if not isinstance(key, str) or type(numel) is not int or numel < 0:
            raise UnsafeCheckpointError(f"bad storage id {pid!r:.80}")
        if len(pid) > 5 and pid[5] is not None:
            raise UnsafeCheckpointError("legacy storage views are not supported")
        known = self.storages.get(key)
        if known is not None:
            if known.stype.name != stype.name or known.numel != numel:
                raise UnsafeCheckpointError(f"storage {key!r} declared twice with different types/sizes")
            return known
        storage = _Storage(stype, key, numel)
        if self._byteorder == "big":
            storage.stype = _StorageType(stype.name, stype.dtype.newbyteorder(">"), stype.convert)
        self.storages[key] = storage
        if self._storage_loader is not None:
            self._storage_loader(storage)
        return storage


def _resolve(obj: Any) -> Any:
    """Replace pending tensors (legacy format) in a dict/list/tuple tree."""
    if isinstance(obj, _PendingTensor):
        return _materialise(obj.storage, obj.offset, obj.size, obj.stride)
    if isinstance(obj, OrderedDict):
        return OrderedDict((k, _resolve(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _resolve(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_resolve(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(v) for v in obj)
    if isinstance(obj, _Storage | _StorageType):
        raise UnsafeCheckpointError("checkpoint holds a bare storage, not a tensor")
    return obj


def _load_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkls = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise UnsafeCheckpointError(
                f"{path}: expected one '<name>/data.pkl' in the archive, found {len(pkls)}"
            )
        prefix = pkls[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise UnsafeCheckpointError(f"{path}: unknown byteorder {byteorder!r}")

        def load_storage(storage: _Storage) -> None:
            entry = f"{prefix}data/{storage.key}"
            try:
                info = zf.getinfo(entry)
            except KeyError:
                raise UnsafeCheckpointError(f"{path}: storage entry {entry!r} is missing") from None
            expected = storage.numel * storage.stype.dtype.itemsize
            if info.file_size != expected:
                raise UnsafeCheckpointError(
                    f"{path}: storage {storage.key!r} holds {info.file_size} bytes, expected {expected}"
                )
            storage.data = np.frombuffer(zf.read(entry), dtype=storage.stype.dtype)

        if zf.getinfo(pkls[0]).file_size > _MAX_PICKLE_BYTES:
            raise UnsafeCheckpointError(f"{path}: {pkls[0]} is larger than {_MAX_PICKLE_BYTES} bytes")
        with zf.open(pkls[0]) as fh:
            return _resolve(_RestrictedUnpickler(fh, load_storage, byteorder).load())


def _load_legacy(fh: IO[bytes], path: Path) -> Any:
    def header() -> Any:
        return _RestrictedUnpickler(fh, None, "little").load()

    if header() != _LEGACY_MAGIC:
        raise UnsafeCheckpointError(f"{path}: not a PyTorch checkpoint (bad magic number)")
    if header() != _LEGACY_PROTOCOL:
        raise UnsafeCheckpointError(f"{path}: unsupported legacy protocol version")
    sys_info = header()
    if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
        raise UnsafeCheckpointError(f"{path}: big-endian legacy checkpoints are not supported")
    unpickler = _RestrictedUnpickler(fh, None, "little")
    result = unpickler.load()
    keys = header()
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise UnsafeCheckpointError(f"{path}: bad storage key list")
    for key in keys:
        storage = unpickler.storages.get(key)
        if storage is None:
            raise UnsafeCheckpointError(f"{path}: unknown storage {key!r}")
        raw = fh.read(8)
        if len(raw) != 8:
            raise UnsafeCheckpointError(f"{path}: truncated storage {key!r}")
        (numel,) = struct.unpack("<q", raw)
        if numel != storage.numel:
            raise UnsafeCheckpointError(
                f"{path}: storage {key!r} has {numel} elements, expected {storage.numel}"
            )
        nbytes = numel * storage.stype.dtype.itemsize
        data = fh.read(nbytes)
        if len(data) != nbytes:
            raise UnsafeCheckpointError(f"{path}: truncated storage {key!r}")
        storage.data = np.frombuffer(data, dtype=storage.stype.dtype)
    return _resolve(result)


def load_checkpoint(path: str | Path) -> Any:
    """Unpickle a ``torch.save`` file with tensors as numpy arrays (see the module docstring)."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        if path.suffix == ".tar" or _is_tar(path):
            raise UnsafeCheckpointError(f"{path}: the old tar checkpoint format is not supported")
        with path.open("rb") as fh:
            return _load_legacy(fh, path)
    except UnsafeCheckpointError:
        raise
    except (
        pickle.UnpicklingError,
        EOFError,
        zipfile.BadZipFile,
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        IndexError,
        RecursionError,
    ) as exc:
        raise UnsafeCheckpointError(f"{path}: not a readable PyTorch checkpoint ({exc})") from exc


def _is_tar(path: Path) -> bool:
    import tarfile

    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """``name -> array`` from a ``torch.save``'d state dict (optionally under ``state_dict``/``model``)."""
    obj = load_checkpoint(path)
    if isinstance(obj, Mapping) and not any(isinstance(v, np.ndarray) for v in obj.values()):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise UnsafeCheckpointError(f"{path}: checkpoint is a {type(obj).__name__}, not a state dict")
    out: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray):
            raise UnsafeCheckpointError(f"{path}: entry {key!r:.80} is not a named tensor")
        out[key] = value
    return out
