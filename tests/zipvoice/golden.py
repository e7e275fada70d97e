"""Reading the ZipVoice golden fixture set: every input and expectation comes from the set itself.

A set is a folder in the reference format (``golden/cases.json``, ``golden/*.npz``, ``audio/``,
``models/<name>/``, ``vocos-mel-24khz-tiny/``; see its README). Tests parametrize over the cases
the set lists (:func:`sample_case_names`, :func:`e2e_case_names`, :func:`feature_prompts`), so a
set with other cases, texts, seeds, step counts or weights runs those, and nothing about one
particular set (a prompt length, a seed, a text) is written in a test.

Parametrization happens at collection time, before the ``reference_dir`` fixture runs: when the
folder is missing the lists hold one placeholder, and the test then skips (or, under CI, fails)
through ``reference_dir`` as before.
"""

from __future__ import annotations

import json
import re
import wave
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from tests.conftest import reference_path

MISSING = "no-fixture"  # placeholder case name when the fixture folder is absent
VOCODER_DIR = "vocos-mel-24khz-tiny"


@cache
def _cases_at(root: str) -> dict[str, Any]:
    path = Path(root) / "golden" / "cases.json"
    if not path.is_file():
        return {}
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def require(name: str) -> None:
    """Skip a test parametrized with the placeholder: the set has no case of that kind."""
    if name == MISSING:
        import pytest

        pytest.skip("this fixture set has no case of this kind")


def cases(reference_dir: Path | None = None) -> dict[str, Any]:
    """``golden/cases.json`` of the set (empty when the set is missing)."""
    return _cases_at(str(reference_dir or reference_path()))


def sample_case(reference_dir: Path, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = cases(reference_dir)["sample_cases"][name]
    return spec


def e2e_case(reference_dir: Path, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = cases(reference_dir)["e2e_cases"][name]
    return spec


def _names(kind: str) -> list[str]:
    return sorted(cases().get(kind, {})) or [MISSING]


def sample_case_names() -> list[str]:
    """Names of the ``model.sample`` cases (``golden/sample_<name>.npz``)."""
    return _names("sample_cases")


def e2e_case_names() -> list[str]:
    """Names of the end-to-end cases (``golden/e2e_<name>.npz``)."""
    return _names("e2e_cases")


def sample_case_names_where(predicate: Any) -> list[str]:
    """Sample cases whose spec and arrays satisfy ``predicate(spec, npz)`` (lazy npz keys)."""
    root = reference_path()
    names = [n for n in sample_case_names() if n != MISSING]
    if not names:
        return [MISSING]
    out = []
    for name in names:
        with np.load(root / "golden" / f"sample_{name}.npz") as data:
            if predicate(cases()["sample_cases"][name], data):
                out.append(name)
    return out


def model_names(reference_dir: Path | None = None) -> list[str]:
    """Model folders the cases use (``models/<name>``), sorted."""
    data = cases(reference_dir)
    used = {c["model"] for kind in ("sample_cases", "e2e_cases") for c in data.get(kind, {}).values()}
    return sorted(used) or [MISSING]


def load_npz(reference_dir: Path, stem: str) -> dict[str, np.ndarray]:
    """All arrays of ``golden/<stem>.npz``."""
    with np.load(reference_dir / "golden" / f"{stem}.npz") as data:
        return {k: data[k] for k in data.files}


def load_sample(reference_dir: Path, name: str) -> dict[str, np.ndarray]:
    return load_npz(reference_dir, f"sample_{name}")


def load_e2e(reference_dir: Path, name: str) -> dict[str, np.ndarray]:
    return load_npz(reference_dir, f"e2e_{name}")


def prompt_channels(reference_dir: Path | None = None) -> dict[str, int]:
    """Prompt wav path (relative to the set) -> feature channels, as the cases use them."""
    data = cases(reference_dir)
    out: dict[str, int] = {}
    for kind in ("sample_cases", "e2e_cases"):
        for spec in data.get(kind, {}).values():
            out.setdefault(spec["prompt_wav"], int(spec.get("num_channels", 1)))
    return out


def feature_prompts() -> list[str]:
    """Prompt stems with golden features (``<stem>_fbank`` in ``golden/features.npz``)."""
    path = reference_path() / "golden" / "features.npz"
    if not path.is_file():
        return [MISSING]
    with np.load(path) as data:
        stems = [k[: -len("_fbank")] for k in data.files if k.endswith("_fbank")]
    return sorted(stems) or [MISSING]


def multichannel_prompts() -> list[str]:
    """Feature prompts the cases use with more than one channel (stereo dialog)."""
    chans = prompt_channels()
    stems = [s for s in feature_prompts() if chans.get(f"audio/{s}.wav", 1) > 1]
    return stems or [MISSING]


def wav_info(path: Path) -> tuple[int, int, int]:
    """``(channels, frames, rate)`` from the WAV header, read independently of our decoder."""
    with wave.open(str(path), "rb") as wf:
        return wf.getnchannels(), wf.getnframes(), wf.getframerate()


def vocoder_config(reference_dir: Path) -> dict[str, Any]:
    """The tiny Vocos ``config.yaml`` (class paths and init args)."""
    import yaml

    with (reference_dir / VOCODER_DIR / "config.yaml").open(encoding="utf-8") as fh:
        config: dict[str, Any] = yaml.safe_load(fh)
    return config


def vocos_key_count(num_layers: int) -> int:
    """State-dict tensors of a Vocos (mel features, backbone, ISTFT head) with ``num_layers`` blocks."""
    feature_extractor = 2  # mel_spec.spectrogram.window, mel_spec.mel_scale.fb
    embed_and_norm = 4  # backbone.embed.{weight,bias}, backbone.norm.{weight,bias}
    per_block = 9  # gamma, dwconv.{w,b}, norm.{w,b}, pwconv1.{w,b}, pwconv2.{w,b}
    final_norm = 2
    head = 3  # out.{weight,bias}, istft.window
    return feature_extractor + embed_and_norm + per_block * num_layers + final_norm + head


def dialog_turns(prompt_text: str) -> tuple[str, str]:
    """``"[S1] a [S2] b"`` -> ``("a", "b")``: the two speakers' prompt transcripts."""
    match = re.fullmatch(r"\s*\[S1\](.*?)\[S2\](.*)", prompt_text, flags=re.S)
    if match is None:
        raise ValueError(f"not a two-turn dialog prompt transcript: {prompt_text!r}")
    return match.group(1).strip(), match.group(2).strip()


def is_dialog_model(reference_dir: Path, model: str) -> bool:
    """Dialog checkpoints carry the speaker tags in their ``tokens.txt``."""
    text = (reference_dir / "models" / model / "tokens.txt").read_text(encoding="utf-8")
    return any(line.split("\t")[0] == "[S1]" for line in text.splitlines())
