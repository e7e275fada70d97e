"""Export a Vocos vocoder to ONNX in sherpa-onnx's layout: ``vocos_24khz.onnx`` (``mels -> mag, x, y``).

sherpa-onnx (``OfflineTts`` with a ``zipvoice`` model config) runs the vocoder graph and then its
own inverse STFT, so the graph stops before ``torch.istft``:

* input ``mels (N, num_mels, T)`` float32 log-mel (not feat-scaled);
* outputs ``mag``, ``x``, ``y``, each ``(N, n_fft/2 + 1, T)``: the clipped magnitude
  ``min(exp(log_mag), 1e2)`` and ``cos(phase)`` / ``sin(phase)``; the complex spectrum is
  ``mag * (x + i·y)``.

Metadata (what sherpa-onnx's vocoder loader reads): ``model_type=vocos`` (picks the Vocos path),
``n_fft``, ``hop_length``, ``win_length``, ``center=1``, ``normalized=0``, ``window_type=hann``,
``pad_mode=reflect``, plus ``sample_rate`` and ``num_mels`` for people reading the file.

Also :func:`write_lexicon`: sherpa-onnx 2.x no longer runs espeak-ng; its ZipVoice front end
looks every word up in a ``lexicon.txt`` (``<word> <token> <token> ...`` per line, tokens from
``tokens.txt``) and skips unknown words. We write the words of the given texts (and a small
built-in English vocabulary), each spelled by our own tokenizer (the model's, e.g. Emilia:
espeak phonemes for English, pinyin for Chinese), so sherpa-onnx and our engine see the same
phonemes per word. Context effects of whole-sentence phonemisation (liaisons, the space token)
are not representable in a lexicon: token counts differ by a few per sentence.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from api.zipvoice.vocos import Vocos, load_vocos

VOCOS_ONNX = "vocos_24khz.onnx"
LEXICON = "lexicon.txt"
VOCOS_INPUTS = ("mels",)
VOCOS_OUTPUTS = ("mag", "x", "y")
OPSET = 13


class VocosSpectrum(nn.Module):
    """Vocos backbone + head projection without the inverse STFT: ``mels -> (mag, cos, sin)``."""

    def __init__(self, vocos: Vocos) -> None:
        super().__init__()
        self.backbone = vocos.backbone
        self.out = vocos.head.out

    def forward(self, mels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        h = self.out(self.backbone(mels)).transpose(1, 2)
        log_mag, phase = h.chunk(2, dim=1)
        mag = torch.clip(torch.exp(log_mag), max=1e2)
        return mag, torch.cos(phase), torch.sin(phase)


def vocos_metadata(vocos: Vocos) -> dict[str, str]:
    istft = vocos.head.istft
    return {
        "model_type": "vocos",
        "comment": "Vocos backbone + ISTFT head projection (inverse STFT done by the runtime)",
        "version": "1",
        "sample_rate": str(vocos.sampling_rate),
        "num_mels": str(vocos.backbone.embed.in_channels),
        "n_fft": str(istft.n_fft),
        "hop_length": str(istft.hop_length),
        "win_length": str(istft.win_length),
        "window_type": "hann",
        "center": "1",
        "normalized": "0",
        "pad_mode": "reflect",
    }


def export_vocos(vocos: Vocos | Path | str, path: Path | str) -> Path:
    """Write ``vocos`` (a model or a ``config.yaml`` + ``pytorch_model.bin`` folder) to ``path``.

    Written to ``<name>.partial.onnx`` first and renamed, so a crash never leaves a truncated file.
    """
    import onnx

    model = vocos if isinstance(vocos, Vocos) else load_vocos(Path(vocos))
    path = Path(path)
    wrapper = VocosSpectrum(model).eval()
    num_mels = int(model.backbone.embed.in_channels)
    example = torch.randn(1, num_mels, 50, generator=torch.Generator().manual_seed(0))
    seq = {0: "N", 2: "T"}
    tmp = path.with_name(path.stem + ".partial.onnx")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (example,),
            str(tmp),
            dynamo=False,
            opset_version=OPSET,
            input_names=list(VOCOS_INPUTS),
            output_names=list(VOCOS_OUTPUTS),
            dynamic_axes={name: seq for name in (*VOCOS_INPUTS, *VOCOS_OUTPUTS)},
        )
    proto = onnx.load(str(tmp))
    for key, value in vocos_metadata(model).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(tmp))
    tmp.replace(path)
    return path


#: a small everyday vocabulary, so an exported folder speaks simple English without a word list
_BASE_TEXT = """
a about after all also an and any are as at back be because been before but by can come could
day do even first for from get give go good have he her here him his how i if in into is it its
just know like look make me more most my new no not now of on one only or other our out over
people say see she so some take than that the their them then there these they think this time
to two up us use very want was way we well what when which who will with work would year you
your hello world test speech voice model text audio sound today morning evening thank please yes
"""
BASE_WORDS: tuple[str, ...] = tuple(_BASE_TEXT.split())

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def lexicon_words(texts: Iterable[str] = (), base: Iterable[str] = BASE_WORDS) -> list[str]:
    """The lower-cased words of ``texts`` (letters and apostrophes) plus ``base``, first-seen order."""
    seen: dict[str, None] = {}
    for word in base:
        seen.setdefault(word.lower(), None)
    for text in texts:
        for match in _WORD.finditer(text):
            seen.setdefault(match.group(0).lower(), None)
    return list(seen)


def write_lexicon(
    path: Path | str, words: Iterable[str], spell: Callable[[str], Sequence[str]], tokens: Iterable[str]
) -> int:
    """Write ``lexicon.txt``: ``<word> <token> ...`` for each word that ``spell`` turns into tokens
    all present in ``tokens`` (words with spaces or empty spellings are left out). Returns the
    number of lines written."""
    known = set(tokens)
    lines = []
    for word in words:
        if not word or any(ch.isspace() for ch in word):
            continue
        spelled = [t for t in spell(word) if not t.isspace()]
        if spelled and all(t in known for t in spelled):
            lines.append(f"{word} {' '.join(spelled)}\n")
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text("".join(lines), encoding="utf-8")
    tmp.replace(path)
    return len(lines)


def export_sherpa_extras(
    out_dir: Path | str,
    vocos: Vocos | Path | str,
    *,
    tokenizer_kind: str = "emilia",
    texts: Iterable[str] = (),
) -> dict[str, Path]:
    """Complete an exported folder (graphs + ``tokens.txt``) into a sherpa-onnx ZipVoice model
    directory: ``vocos_24khz.onnx`` and ``lexicon.txt`` (words of ``texts`` + :data:`BASE_WORDS`)."""
    from api.zipvoice.tokenizer import get_tokenizer

    out = Path(out_dir)
    tokens_txt = out / "tokens.txt"
    if not tokens_txt.is_file():
        raise FileNotFoundError(f"tokens.txt not found in {out}")
    tokenizer = get_tokenizer(tokenizer_kind, tokens_txt)
    vocoder = export_vocos(vocos, out / VOCOS_ONNX)
    lexicon = out / LEXICON
    write_lexicon(lexicon, lexicon_words(texts), tokenizer.text_to_tokens, tokenizer.token2id)
    return {VOCOS_ONNX: vocoder, LEXICON: lexicon}
