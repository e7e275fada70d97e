#!/usr/bin/env python3
"""Build a second ZipVoice golden fixture set from the first, to check that the golden tests are
driven by the set's data (``golden/cases.json`` and the arrays), not by facts of one set.

    .venv/bin/python scripts/make_variant_fixture.py /tmp/zv-variant            # from ../shared/...
    ZIPVOICE_REFERENCE_DIR=/tmp/zv-variant .venv/bin/python -m pytest tests/zipvoice -k golden ...

What changes, relative to the reference set (``--src``):

* transformations the tests must not care about: every case renamed and the case lists reordered;
  the prompt wavs renamed (``audio/*.wav``, the ``features.npz`` keys and ``cases.json`` follow);
  two tokenizer cases dropped and the rest reordered.
* with ``--regenerate`` (the default): a Vocos of another depth (3 ConvNeXt blocks, new random
  weights) with a new ``vocoder.npz``; a shorter prompt (another length, so other frame counts);
  new ``model.sample`` cases for every model with other texts, seeds, step counts, speeds, t_shift
  and guidance; and the end-to-end cases redone with the new Vocos and other settings.
  **Those expectations are computed by this project's engine** (it reproduces the reference set
  within the README's tolerances), so they only show that the tests read their inputs from the
  set; they are not reference data and must never be copied into the reference folder.

The reference-produced sample cases are kept (renamed), so the variant mixes reference and
engine-made cases. Nothing here is used by the server.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import wave
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

DEFAULT_SRC = REPO_ROOT.parent / "shared" / "fixtures" / "zipvoice-reference"
PROMPT_RENAMES = {"prompt": "speaker_a", "prompt_dialog": "duo", "prompt_dialog_stereo": "duo_stereo"}
SHORT_PROMPT = "speaker_a_short"
VOCODER_DIR = "vocos-mel-24khz-tiny"

# engine-made sample cases: (model, texts, seed, num_step, speed, t_shift, guidance)
NEW_SAMPLE_CASES: dict[str, tuple[str, list[str], int, int, float, float, float]] = {
    "eng_plain_fast": ("zipvoice", ["Good morning, everyone."], 1234, 3, 1.2, 0.7, 1.3),
    "eng_plain_pair": ("zipvoice", ["Yes.", "The river bends twice before the town."], 99, 2, 0.9, 0.5, 1.0),
    "eng_distill": ("zipvoice_distill", ["Another short test sentence."], 77, 2, 0.9, 0.5, 2.5),
    "eng_dialog": ("zipvoice_dialog", ["[S1] Nice weather. [S2] Indeed it is!"], 5, 3, 1.0, 0.6, 2.0),
    "eng_dialog_stereo": ("zipvoice_dialog_stereo", ["[S1] Ready? [S2] Always ready."], 8, 2, 1.1, 0.5, 1.2),
}
# engine-made end-to-end cases: (model, text, seed, num_step, speed, t_shift, guidance)
NEW_E2E_CASES: dict[str, tuple[str, str, int, int, float, float, float]] = {
    "eng_e2e_plain": ("zipvoice", "Testing another sentence without a final stop", 4321, 3, 1.1, 0.6, 1.0),
    "eng_e2e_distill": ("zipvoice_distill", "A second voice, a second test.", 2468, 2, 0.95, 0.5, 3.0),
}


# --------------------------------------------------------------------------------------------------
# transformations of the reference data
# --------------------------------------------------------------------------------------------------
def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]


def rename_prompts(out: Path, cases: dict[str, Any]) -> None:
    for old, new in PROMPT_RENAMES.items():
        (out / "audio" / f"{old}.wav").rename(out / "audio" / f"{new}.wav")
    for kind in ("sample_cases", "e2e_cases"):
        for spec in cases[kind].values():
            stem = Path(spec["prompt_wav"]).stem
            spec["prompt_wav"] = f"audio/{PROMPT_RENAMES[stem]}.wav"
    feats = _load_npz(out / "golden" / "features.npz")
    renamed = {}
    for key, value in feats.items():
        stem = max((s for s in PROMPT_RENAMES if key.startswith(s + "_")), key=len)
        renamed[PROMPT_RENAMES[stem] + key[len(stem) :]] = value
    _save_npz(out / "golden" / "features.npz", renamed)


def rename_cases(out: Path, cases: dict[str, Any]) -> None:
    """Rename every case (and its npz) and reverse the order of the lists."""
    for kind, prefix in (("sample_cases", "sample"), ("e2e_cases", "e2e")):
        renamed = {}
        for i, (name, spec) in enumerate(reversed(list(cases[kind].items()))):
            new = f"ref{i}_{name[::-1]}"
            (out / "golden" / f"{prefix}_{name}.npz").rename(out / "golden" / f"{prefix}_{new}.npz")
            renamed[new] = spec
        cases[kind] = renamed


def shrink_tokenizer_cases(out: Path) -> None:
    path = out / "golden" / "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    kept = data["cases"][:-2]
    for kind in ("emilia", "espeak", "dialog"):  # every tokenizer keeps at least one case
        if not any(kind in c for c in kept):
            kept.append(next(c for c in data["cases"] if kind in c))
    data["cases"] = list(reversed(kept))
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")


# --------------------------------------------------------------------------------------------------
# engine-made data
# --------------------------------------------------------------------------------------------------
def write_short_prompt(out: Path, fraction: float = 0.8) -> Path:
    src = out / "audio" / f"{PROMPT_RENAMES['prompt']}.wav"
    with wave.open(str(src), "rb") as wf:
        params = wf.getparams()
        frames = wf.readframes(int(wf.getnframes() * fraction))
    dst = out / "audio" / f"{SHORT_PROMPT}.wav"
    with wave.open(str(dst), "wb") as wf:
        wf.setparams(params)
        wf.writeframes(frames)
    return dst


def add_short_prompt_features(out: Path) -> None:
    from api.zipvoice.audio_prep import read_audio
    from api.zipvoice.features import VocosFbank

    wav, sr = read_audio(out / "audio" / f"{SHORT_PROMPT}.wav")
    fbank = VocosFbank(num_channels=wav.shape[0]).extract(wav, sampling_rate=sr).numpy()
    feats = _load_npz(out / "golden" / "features.npz")
    feats[f"{SHORT_PROMPT}_fbank"] = fbank
    feats[f"{SHORT_PROMPT}_fbank_librosa"] = fbank
    _save_npz(out / "golden" / "features.npz", feats)


def write_vocoder(out: Path, num_layers: int = 3, seed: int = 21) -> Any:
    """A random tiny Vocos of another depth, and ``vocoder.npz`` computed with it."""
    import torch
    import yaml

    from api.zipvoice.vocos import build_vocos, load_vocos

    vdir = out / VOCODER_DIR
    config = yaml.safe_load((vdir / "config.yaml").read_text(encoding="utf-8"))
    config["backbone"]["init_args"]["num_layers"] = num_layers
    torch.manual_seed(seed)
    model = build_vocos(config)
    gen = torch.Generator().manual_seed(seed + 1)
    state = model.state_dict()
    for name, p in model.named_parameters():
        state[name] = p.detach() + 0.02 * torch.randn(p.shape, generator=gen)
    (vdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    torch.save(state, vdir / "pytorch_model.bin")
    vocos = load_vocos(vdir)
    mel = -4 + 1.5 * torch.randn(1, 100, 48, generator=torch.Generator().manual_seed(seed + 2))
    with torch.inference_mode():
        backbone_out = vocos.backbone(mel)
    wav = vocos.decode(mel)
    arrays = {"mel": mel.numpy(), "backbone_out": backbone_out.numpy(), "wav": wav.numpy()}
    _save_npz(out / "golden" / "vocoder.npz", arrays)
    return vocos


def _tokenizer(out: Path, model: str) -> Any:
    from api.zipvoice.tokenizer import DialogTokenizer, EmiliaTokenizer

    tokens = out / "models" / model / "tokens.txt"
    is_dialog = any(line.split("\t")[0] == "[S1]" for line in tokens.read_text("utf-8").splitlines())
    return DialogTokenizer(tokens) if is_dialog else EmiliaTokenizer(tokens)


def _prompt_of(cases: dict[str, Any], model: str) -> tuple[str, str, int]:
    """``(prompt transcript, prompt wav, channels)`` of a reference case of ``model``."""
    spec = next(s for s in cases["sample_cases"].values() if s["model"] == model)
    wav = spec["prompt_wav"]
    if spec["num_channels"] == 1 and not model.startswith("zipvoice_dialog"):
        wav = f"audio/{SHORT_PROMPT}.wav"  # another prompt length for the plain models
    return spec["prompt_text"], wav, int(spec["num_channels"])


def sample_case(out: Path, cases: dict[str, Any], name: str, models: dict[str, Any]) -> dict[str, Any]:
    """One ``model.sample`` case computed with our engine (README 3c layout)."""
    import torch

    from api.zipvoice.audio_prep import FEAT_SCALE, TARGET_RMS, prepare_prompt, read_audio
    from api.zipvoice.sampling import SamplerOptions

    model_name, texts, seed, steps, speed, t_shift, guidance = NEW_SAMPLE_CASES[name]
    model = models[model_name]
    prompt_text, prompt_wav, channels = _prompt_of(cases, model_name)
    tok = _tokenizer(out, model_name)
    tokens = tok.texts_to_token_ids(texts)
    prompt_tokens = tok.texts_to_token_ids([prompt_text])[0]
    wav, sr = read_audio(out / prompt_wav)
    prompt = prepare_prompt(wav, sr, num_channels=channels, remove_silences=False)
    batch, frames = len(texts), prompt.features.shape[1]
    inputs: dict[str, Any] = {
        "tokens": tokens,
        "prompt_tokens": [prompt_tokens] * batch,
        "prompt_features": prompt.features.repeat(batch, 1, 1),
        "prompt_features_lens": torch.full((batch,), frames),
        "options": SamplerOptions(speed=speed, t_shift=t_shift, num_step=steps, guidance_scale=guidance),
    }
    with torch.inference_mode():
        text_cond, _ = model.forward_text_inference_ratio_duration(
            tokens, inputs["prompt_tokens"], inputs["prompt_features_lens"], speed
        )
    shape = (batch, text_cond.shape[1], prompt.features.shape[-1])
    x0 = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    res = model.sample_detailed(**inputs, x0=x0, keep_steps=True)
    with torch.inference_mode():
        text_embed, text_embed_lens = model.forward_text_embed([prompt_tokens + t for t in tokens])
        is_distill = model_name == "zipvoice_distill"
        fm_raw_t = float(res.timesteps[-2])
        fm_raw_out = model.forward_fm_decoder(
            t=torch.tensor(fm_raw_t),
            xt=res.step_x[-1],
            text_condition=res.text_condition,
            speech_condition=res.speech_condition,
            padding_mask=res.padding_mask,
            guidance_scale=torch.tensor(guidance) if is_distill else None,
        )
    padded = np.full((batch, max(len(t) for t in tokens)), -1, dtype=np.int64)
    for i, t in enumerate(tokens):
        padded[i, : len(t)] = t
    arrays = {
        "tokens": padded,
        "tokens_lens": np.array([len(t) for t in tokens], dtype=np.int64),
        "prompt_tokens": np.array(prompt_tokens, dtype=np.int64),
        "prompt_features": prompt.features.numpy(),
        "prompt_features_lens": np.full((batch,), frames, dtype=np.int64),
        "speed": np.float32(speed),
        "t_shift": np.float32(t_shift),
        "num_step": np.int64(steps),
        "guidance_scale": np.float32(guidance),
        "x0": x0.numpy(),
        "pred_features": res.pred_features.numpy(),
        "pred_features_lens": res.pred_features_lens.numpy(),
        "pred_prompt_features": res.pred_prompt_features.numpy(),
        "pred_prompt_features_lens": res.pred_prompt_features_lens.numpy(),
        "text_embed": text_embed.numpy(),
        "text_embed_lens": text_embed_lens.numpy(),
        "text_condition": res.text_condition.numpy(),
        "padding_mask": res.padding_mask.numpy(),
        "speech_condition": res.speech_condition.numpy(),
        "timesteps": res.timesteps.numpy(),
        "step_t": res.timesteps[:-1].numpy(),
        "step_x": torch.stack(res.step_x).numpy(),
        "step_v": torch.stack(res.step_v).numpy(),
        "fm_raw_t": np.float32(fm_raw_t),
        "fm_raw_guidance_scale": np.float32(guidance if is_distill else np.nan),
        "fm_raw_out": fm_raw_out.numpy(),
        "prompt_rms": np.float32(prompt.rms),
    }
    _save_npz(out / "golden" / f"sample_{name}.npz", arrays)
    return {
        "model": model_name,
        "texts": texts,
        "prompt_text": prompt_text,
        "prompt_wav": prompt_wav,
        "num_channels": channels,
        "guidance_scale": guidance,
        "speed": speed,
        "t_shift": t_shift,
        "duration": "predict",
        "num_step": steps,
        "seed": seed,
        "feat_scale": FEAT_SCALE,
        "target_rms": TARGET_RMS,
    }


def e2e_case(
    out: Path, cases: dict[str, Any], name: str, models: dict[str, Any], vocos: Any
) -> dict[str, Any]:
    """One end-to-end case computed with our pipeline (README 3e layout), intermediates captured."""
    import torch

    from api.zipvoice.audio_prep import FEAT_SCALE, TARGET_RMS, read_audio, remove_silence
    from api.zipvoice.pipeline import ZipVoicePipeline

    model_name, text, seed, steps, speed, t_shift, guidance = NEW_E2E_CASES[name]
    model = models[model_name]
    prompt_text, prompt_wav, _ = _prompt_of(cases, model_name)
    seen: dict[str, Any] = {}

    class Spy:
        """Records ``sample``'s inputs and outputs and ``decode``'s input and output."""

        def sample(self, **kw: Any) -> Any:
            res = model.sample_detailed(**kw)
            seen.update(sample_in=kw, sample_out=res)
            return res.pred_features, res.pred_features_lens

        def decode(self, mel: Any) -> Any:
            wav = vocos.decode(mel)
            seen.update(vocoder_in=mel, vocoder_out=wav)
            return wav

    spy = Spy()
    pipeline = ZipVoicePipeline(model, _tokenizer(out, model_name), spy)
    pipeline.model = spy
    result = pipeline.generate(
        text, prompt_text, out / prompt_wav, num_step=steps, guidance_scale=guidance, speed=speed,
        t_shift=t_shift, seed=seed,
    )  # fmt: skip
    if result.num_chunks != 1:
        raise RuntimeError(f"{name}: the text must fit one chunk")
    wav, sr = read_audio(out / prompt_wav)
    desilenced = remove_silence(wav, sr, only_edge=False, trail_sil_ms=200)
    kw, res = seen["sample_in"], seen["sample_out"]
    arrays = {
        "x0": res.x0.numpy(),
        "num_x0": np.int64(1),
        "prompt_wav_desilenced": desilenced.numpy(),
        "prompt_rms": np.float32(result.prompt.rms),
        "prompt_wav_processed": result.prompt.wav.numpy(),
        "prompt_fbank": (result.prompt.features[0] / FEAT_SCALE).numpy(),
        "sample_tokens": np.array(kw["tokens"], dtype=np.int64),
        "sample_prompt_tokens": np.array(kw["prompt_tokens"], dtype=np.int64),
        "sample_prompt_features": kw["prompt_features"].numpy(),
        "sample_prompt_features_lens": kw["prompt_features_lens"].numpy(),
        "pred_features": res.pred_features.numpy(),
        "pred_features_lens": res.pred_features_lens.numpy(),
        "vocoder_in": seen["vocoder_in"].numpy(),
        "vocoder_out": seen["vocoder_out"].numpy(),
        "wav": result.wav.numpy(),
        "sampling_rate": np.int64(result.sampling_rate),
    }
    if not torch.equal(res.x0, torch.randn(res.x0.shape, generator=torch.Generator().manual_seed(seed))):
        raise RuntimeError(f"{name}: the noise is not the seeded draw")
    _save_npz(out / "golden" / f"e2e_{name}.npz", arrays)
    return {
        "model": model_name,
        "text": text,
        "prompt_text": prompt_text,
        "prompt_wav": prompt_wav,
        "num_step": steps,
        "guidance_scale": guidance,
        "speed": speed,
        "t_shift": t_shift,
        "target_rms": TARGET_RMS,
        "feat_scale": FEAT_SCALE,
        "sampling_rate": result.sampling_rate,
        "max_duration": pipeline.max_duration,
        "remove_long_sil": False,
        "seed": seed,
    }


def regenerate(out: Path, cases: dict[str, Any]) -> None:
    import torch

    from api.zipvoice.model.checkpoint import load_model

    torch.set_num_threads(1)
    write_short_prompt(out)
    add_short_prompt_features(out)
    vocos = write_vocoder(out)
    names = {m for m, *_ in NEW_SAMPLE_CASES.values()} | {m for m, *_ in NEW_E2E_CASES.values()}
    models = {m: load_model(out / "models" / m) for m in names}
    for name in NEW_SAMPLE_CASES:
        cases["sample_cases"][name] = sample_case(out, cases, name, models)
    # the reference end-to-end cases used the old Vocos: replaced by engine-made ones
    for name in cases["e2e_cases"]:
        (out / "golden" / f"e2e_{name}.npz").unlink()
    cases["e2e_cases"] = {name: e2e_case(out, cases, name, models, vocos) for name in NEW_E2E_CASES}
    # a case list in another order than the names sort in
    cases["sample_cases"] = dict(reversed(list(cases["sample_cases"].items())))


def make_variant(src: Path, out: Path, regen: bool = True) -> Path:
    if out.exists():
        raise SystemExit(f"{out} exists; choose a new folder")
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("SHA256SUMS"))
    cases = json.loads((out / "golden" / "cases.json").read_text(encoding="utf-8"))
    rename_prompts(out, cases)
    rename_cases(out, cases)
    shrink_tokenizer_cases(out)
    if regen:
        regenerate(out, cases)
    (out / "golden" / "cases.json").write_text(
        json.dumps(cases, indent=1, ensure_ascii=False), encoding="utf-8"
    )
    (out / "README.md").write_text(
        "# Variant fixture set (scratch)\n\nMade by `scripts/make_variant_fixture.py` from the reference set "
        f"`{src}`. Cases named `eng_*`, the `{SHORT_PROMPT}` features, `vocoder.npz` and the tiny Vocos "
        "were computed by this project's engine, not by the reference implementation.\n",
        encoding="utf-8",
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="new folder for the variant set")
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC, help="the reference set")
    ap.add_argument(
        "--no-regenerate",
        dest="regenerate",
        action="store_false",
        help="only rename/reorder (no engine-made cases; every expectation stays the reference's)",
    )
    args = ap.parse_args(argv)
    make_variant(args.src, args.out, args.regenerate)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
