"""The restricted ``torch.save`` reader: same arrays as ``torch.load``, and nothing but tensors."""

from __future__ import annotations

import builtins
import io
import os
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api.zipvoice.torch_pickle import UnsafeCheckpointError, load_checkpoint, load_state_dict


class _Storage:
    """Written as a persistent id, as torch does for its storages."""

    def __init__(self, type_name: str, key: str, numel: int) -> None:
        self.type_name, self.key, self.numel = type_name, key, numel


class _Global:
    """Pickled as a bare ``GLOBAL module name`` (the target need not exist here)."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name


class _Call:
    """Pickled as ``GLOBAL`` + args + ``REDUCE``."""

    def __init__(self, module: str, name: str, *args: Any) -> None:
        self.func, self.args = _Global(module, name), args


class _Build:
    """Pickled as ``target`` + ``state`` + ``BUILD`` (what ``__setstate__``/``__dict__`` updates use)."""

    def __init__(self, target: Any, state: Any) -> None:
        self.target, self.state = target, state


class _Pickler(pickle._Pickler):  # the pure-Python pickler: save_global can be bypassed
    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, _Storage):
            return ("storage", _Global("torch", obj.type_name), obj.key, "cpu", obj.numel)
        return None

    def save(self, obj: Any, save_persistent_id: bool = True) -> None:
        this: Any = self  # pickle._Pickler's internals are not in the type stubs
        if isinstance(obj, _Global):
            this.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
            return
        if isinstance(obj, _Build):
            self.save(obj.target)
            self.save(obj.state)
            this.write(pickle.BUILD)
            return
        if isinstance(obj, _Call):
            self.save(obj.func)
            self.save(obj.args)
            this.write(pickle.REDUCE)
            return
        base: Any = pickle._Pickler
        base.save(this, obj, save_persistent_id)


def _tensor(storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> _Call:
    return _Call("torch._utils", "_rebuild_tensor_v2", storage, offset, size, stride, False, OrderedDict())


def _write_zip(path: Path, obj: Any, storages: dict[str, bytes], byteorder: str = "little") -> Path:
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/byteorder", byteorder)
        for key, raw in storages.items():
            zf.writestr(f"archive/data/{key}", raw)
    return path


def test_fixture_vocoder_checkpoint_matches_torch_load(reference_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    path = reference_dir / "vocos-mel-24khz-tiny" / "pytorch_model.bin"
    ours = load_state_dict(path)
    ref = torch.load(path, map_location="cpu", weights_only=True)
    assert list(ours) == list(ref)
    for key, tensor in ref.items():
        assert ours[key].dtype == tensor.numpy().dtype
        np.testing.assert_array_equal(ours[key], tensor.numpy(), err_msg=key)


def test_fixture_zipvoice_checkpoints_match_torch_load(reference_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    paths = sorted((reference_dir / "models").glob("*/model.pt"))
    assert paths
    for path in paths:
        ref = torch.load(path, map_location="cpu", weights_only=True)
        ref = ref["model"] if "model" in ref and isinstance(ref["model"], dict) else ref
        ours = load_state_dict(path)
        assert set(ours) == set(ref), path
        for key, tensor in ref.items():
            np.testing.assert_array_equal(ours[key], tensor.numpy(), err_msg=f"{path}: {key}")


def test_oversized_pickle_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from api.zipvoice import torch_pickle

    path = _write_zip(tmp_path / "big.pt", {"x": "y" * 200}, {})
    monkeypatch.setattr(torch_pickle, "_MAX_PICKLE_BYTES", 100)
    with pytest.raises(UnsafeCheckpointError, match="larger than"):
        load_checkpoint(path)


def _torch_zoo(torch: Any) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=gen)
    return {
        "f32": torch.randn(3, 4, generator=gen),
        "f64": torch.randn(2, 3, dtype=torch.float64, generator=gen),
        "f16": torch.randn(7, generator=gen).half(),
        "bf16": torch.randn(4, 2, generator=gen).bfloat16(),
        "i64": torch.arange(-5, 5),
        "i32": torch.arange(7, dtype=torch.int32),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 3),
        "transposed": base.t(),  # non-contiguous view
        "slice": base[2:4, 1:],  # view with a storage offset, sharing ``base``'s storage
        "base": base,
        "param": torch.nn.Parameter(torch.ones(2, 2)),
    }


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_round_trip_dtypes_views_and_parameters(tmp_path: Path, legacy: bool) -> None:
    torch = pytest.importorskip("torch")
    zoo = _torch_zoo(torch)
    path = tmp_path / "ckpt.pt"
    torch.save(zoo, path, _use_new_zipfile_serialization=not legacy)
    ours = load_state_dict(path)
    assert list(ours) == list(zoo)
    for key, tensor in zoo.items():
        expect = tensor.detach()
        if expect.dtype == torch.bfloat16:
            expect = expect.float()
        expect_np = expect.numpy()
        assert ours[key].shape == expect_np.shape, key
        assert ours[key].dtype == expect_np.dtype, key
        np.testing.assert_array_equal(ours[key], expect_np, err_msg=key)
        assert ours[key].flags.c_contiguous and ours[key].flags.writeable


def test_nested_checkpoint_and_state_dict_unwrapping(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.Linear(3, 2)
    path = tmp_path / "wrapped.pt"
    torch.save({"model": model.state_dict(), "epoch": 7, "lr": [0.1, (1, "a")]}, path)
    tree = load_checkpoint(path)
    assert tree["epoch"] == 7 and tree["lr"] == [0.1, (1, "a")]
    state = load_state_dict(path)
    assert set(state) == {"weight", "bias"}
    np.testing.assert_array_equal(state["weight"], model.weight.detach().numpy())


def test_whole_module_pickle_is_refused(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(3, 2), path)  # pickles the class torch.nn.modules.linear.Linear
    with pytest.raises(UnsafeCheckpointError, match=r"torch\.nn\.modules\.linear\.Linear"):
        load_checkpoint(path)


class _Evil:
    def __init__(self, func: Any, arg: str) -> None:
        self.func, self.arg = func, arg

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (self.func, (self.arg,))


@pytest.mark.parametrize("container", ["zip", "legacy"])
@pytest.mark.parametrize("attack", ["os.system", "builtins.eval", "builtins.exec"])
def test_malicious_pickle_is_refused_and_not_executed(tmp_path: Path, attack: str, container: str) -> None:
    marker = tmp_path / "pwned"
    if attack == "os.system":
        payload = _Evil(os.system, f"touch {marker}")
    else:
        code = f"open({str(marker)!r}, 'w').close()"
        payload = _Evil(getattr(builtins, attack.split(".")[1]), code)
    path = tmp_path / "evil.bin"
    if container == "zip":
        obj = {"weight": payload}
        buf = io.BytesIO()
        pickle.dump(obj, buf, protocol=2)
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", buf.getvalue())
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(UnsafeCheckpointError, match="not a tensor type"):
        load_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("torch", "Tensor"),
        ("torch._utils", "_rebuild_qtensor"),
        ("torch.nn.modules.linear", "Linear"),
        ("collections", "defaultdict"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("nosuch.module", "thing"),
    ],
)
def test_unknown_globals_are_refused(tmp_path: Path, module: str, name: str) -> None:
    storage = _Storage("FloatStorage", "0", 2)
    obj = {"ok": _tensor(storage, 0, (2,), (1,)), "nested": [{"deep": _Call(module, name)}]}
    path = _write_zip(tmp_path / "x.pt", obj, {"0": np.ones(2, "<f4").tobytes()})
    with pytest.raises(UnsafeCheckpointError, match=rf"{module}\.{name}"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "target",
    [
        _Global("torch", "FloatStorage"),
        _Global("torch._utils", "_rebuild_tensor_v2"),
        _Global("collections", "OrderedDict"),
    ],
    ids=["storage-type", "rebuild-function", "ordereddict-class"],
)
@pytest.mark.parametrize(
    "state",
    [{"dtype": "<i1", "__defaults__": (1,)}, (None, {"dtype": "<i1", "convert": None})],
    ids=["dict-state", "slot-state"],
)
def test_build_cannot_tamper_with_allowed_objects(tmp_path: Path, target: _Global, state: Any) -> None:
    evil = _write_zip(tmp_path / "evil.pt", {"x": _Build(target, state)}, {})
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(evil)
    # and the loader still reads ordinary checkpoints as before
    data = np.array([1.0, 2.0], dtype="<f4")
    good = {"w": _tensor(_Storage("FloatStorage", "0", 2), 0, (2,), (1,))}
    state_dict = load_state_dict(_write_zip(tmp_path / "good.pt", good, {"0": data.tobytes()}))
    assert state_dict["w"].dtype == np.float32
    np.testing.assert_array_equal(state_dict["w"], data)


def test_deeply_nested_pickle_is_a_clear_error(tmp_path: Path) -> None:
    deep = pickle.PROTO + b"\x02" + pickle.EMPTY_TUPLE + pickle.TUPLE1 * 100_000 + pickle.STOP  # ((((),),),)…
    path = tmp_path / "deep.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", deep)
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(path)


def test_handcrafted_checkpoint_loads(tmp_path: Path) -> None:
    """The reader needs no torch: a checkpoint written here without torch loads as written."""
    data = np.arange(12, dtype="<f4")
    storage = _Storage("FloatStorage", "0", 12)
    obj = _Call(
        "collections",
        "OrderedDict",
        [("a", _tensor(storage, 2, (2, 3), (1, 2))), ("b", _tensor(storage, 0, (12,), (1,)))],
    )
    state = load_state_dict(_write_zip(tmp_path / "c.pt", obj, {"0": data.tobytes()}))
    np.testing.assert_array_equal(state["a"], np.lib.stride_tricks.as_strided(data[2:], (2, 3), (4, 8)))
    np.testing.assert_array_equal(state["b"], data)


def test_big_endian_storage(tmp_path: Path) -> None:
    values = np.array([1.5, -2.25, 3e7], dtype=">f4")
    storage = _Storage("FloatStorage", "0", 3)
    obj = {"w": _tensor(storage, 0, (3,), (1,)), "tail": _tensor(storage, 1, (2,), (1,))}
    state = load_state_dict(_write_zip(tmp_path / "be.pt", obj, {"0": values.tobytes()}, byteorder="big"))
    assert state["w"].dtype == np.float32
    np.testing.assert_array_equal(state["w"], values.astype(np.float32))
    np.testing.assert_array_equal(state["tail"], values[1:].astype(np.float32))


@pytest.mark.parametrize(
    ("offset", "size", "stride"),
    [
        (0, (5,), (1,)),  # past the end
        (3, (2,), (1,)),  # offset + size past the end
        (0, (2, 2), (3, 1)),  # strided past the end
        (-1, (2,), (1,)),  # negative offset
        (0, (1_000_000,), (0,)),  # stride-0 expansion far beyond the storage
    ],
)
def test_out_of_bounds_views_are_refused(
    tmp_path: Path, offset: int, size: tuple[int, ...], stride: tuple[int, ...]
) -> None:
    obj = {"w": _tensor(_Storage("FloatStorage", "0", 4), offset, size, stride)}
    path = _write_zip(tmp_path / "oob.pt", obj, {"0": np.zeros(4, "<f4").tobytes()})
    with pytest.raises(UnsafeCheckpointError):
        load_state_dict(path)


def test_storage_size_mismatch_and_missing_entry_are_refused(tmp_path: Path) -> None:
    obj = {"w": _tensor(_Storage("FloatStorage", "0", 4), 0, (4,), (1,))}
    short = _write_zip(tmp_path / "short.pt", obj, {"0": np.zeros(3, "<f4").tobytes()})
    with pytest.raises(UnsafeCheckpointError, match="bytes"):
        load_state_dict(short)
    missing = _write_zip(tmp_path / "missing.pt", obj, {})
    with pytest.raises(UnsafeCheckpointError, match="missing"):
        load_state_dict(missing)


def test_bad_arguments_to_allowed_globals_are_refused(tmp_path: Path) -> None:
    storage = _Storage("FloatStorage", "0", 4)
    raw = {"0": np.zeros(4, "<f4").tobytes()}
    cases = [
        _Call("torch._utils", "_rebuild_tensor_v2", "not a storage", 0, (4,), (1,), False, OrderedDict()),
        _Call("torch._utils", "_rebuild_tensor_v2", storage, 0, [4], (1,), False, OrderedDict()),
        _Call("torch._utils", "_rebuild_parameter", "junk", False, OrderedDict()),
    ]
    for i, call in enumerate(cases):
        with pytest.raises(UnsafeCheckpointError):
            load_state_dict(_write_zip(tmp_path / f"bad{i}.pt", {"w": call}, raw))


def test_not_a_state_dict_and_garbage(tmp_path: Path) -> None:
    lst = _write_zip(tmp_path / "list.pt", [1, 2], {})
    with pytest.raises(UnsafeCheckpointError, match="not a state dict"):
        load_state_dict(lst)
    mixed = _write_zip(tmp_path / "mixed.pt", {"a": 1}, {})
    with pytest.raises(UnsafeCheckpointError, match="not a named tensor"):
        load_state_dict(mixed)
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00\x01definitely not a checkpoint")
    with pytest.raises(UnsafeCheckpointError):
        load_state_dict(garbage)
