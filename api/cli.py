"""Console scripts: ``zipvoice-server`` (serve), ``zipvoice-synth`` (offline synthesis), ``zipvoice-export``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from api.settings import Settings


def load_settings(prog: str) -> Settings:
    """``Settings()`` from the environment; a bad setting ends the process with one line per bad
    variable (name, problem, expected form) and exit status 2, never a traceback."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from api.settings import Settings, settings_error_lines

    try:
        return Settings()
    except ValidationError as exc:
        for line in settings_error_lines(exc, Settings):
            print(f"{prog}: {line}", file=sys.stderr)
    except SettingsError as exc:  # e.g. an unreadable .env file
        print(f"{prog}: invalid settings: {str(exc).splitlines()[0][:300]}", file=sys.stderr)
    raise SystemExit(2)


def serve(argv: list[str] | None = None) -> None:
    """Start the HTTP server."""
    import uvicorn

    from api.app import create_app

    settings = load_settings("zipvoice-server")
    parser = argparse.ArgumentParser(prog="zipvoice-server", description="OpenAI-compatible speech server")
    parser.add_argument("--host", default=settings.host, help=f"bind address (default {settings.host})")
    parser.add_argument("--port", type=int, default=settings.port, help=f"port (default {settings.port})")
    parser.add_argument("--log-level", default=settings.log_level)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = settings.model_copy(update={"host": args.host, "port": args.port})
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=settings.shutdown_timeout,
    )
    server = uvicorn.Server(config)

    def handle_exit(sig: int, frame: FrameType | None) -> None:
        # SIGTERM/SIGINT: /ready turns 503 at once; uvicorn stops accepting and drains in-flight work.
        # Not uvicorn's own handler: that one re-raises the signal after the drain, so a clean
        # shutdown would end with status 143 instead of 0. A second SIGINT still forces the exit.
        app.state.services.readiness.draining = True
        if server.should_exit and sig == signal.SIGINT:
            server.force_exit = True
        else:
            server.should_exit = True

    server.handle_exit = handle_exit  # type: ignore[method-assign]
    server.run()


if __name__ == "__main__":  # pragma: no cover
    serve(sys.argv[1:])


def synth(argv: list[str] | None = None) -> None:
    """Offline synthesis with a ZipVoice variant: prompt clip + transcript + text → audio file."""
    parser = argparse.ArgumentParser(
        prog="zipvoice-synth", description="Zero-shot TTS with ZipVoice, offline"
    )
    parser.add_argument(
        "--model",
        default="zipvoice",
        help="zipvoice, zipvoice_distill, zipvoice_dialog, zipvoice_dialog_stereo",
    )
    parser.add_argument(
        "--model-dir", type=Path, help="directory holding <variant>/model.pt, model.json, tokens.txt"
    )
    parser.add_argument("--vocoder-dir", type=Path, help="Vocos directory (config.yaml, pytorch_model.bin)")
    parser.add_argument(
        "--prompt-wav", type=Path, required=True, help="reference clip (any common audio format)"
    )
    parser.add_argument("--prompt-text", help="transcript of the reference clip (default: Whisper)")
    parser.add_argument("--text", required=True, help="text to speak")
    parser.add_argument(
        "--out", type=Path, required=True, help="output file; format from the extension (wav, mp3, flac, …)"
    )
    parser.add_argument("--num-steps", type=int)
    parser.add_argument("--guidance-scale", type=float)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 …")
    parser.add_argument("--num-threads", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")

    import asyncio

    from api.audio.encode import CONTENT_TYPES
    from api.engines.registry import EngineRegistry
    from api.engines.zipvoice import VARIANTS
    from api.errors import APIError
    from api.runtime_env import configure_process
    from api.synthesis.reference import ReferencePrep
    from api.synthesis.request import SpeechJob
    from api.synthesis.service import SpeechService
    from api.voices.sources import VoiceResolver

    if args.model not in VARIANTS:
        parser.error(f"--model must be one of {', '.join(VARIANTS)}")
    fmt = args.out.suffix.lstrip(".").lower() or "wav"
    if fmt not in CONTENT_TYPES:
        parser.error(f"--out must end in one of {', '.join('.' + f for f in CONTENT_TYPES)}")
    # The prompt is read as a file+ voice under its own folder (the same safe reader as the server);
    # the server's size limits on text and clip bytes do not apply to a local run.
    prompt = args.prompt_wav.resolve()
    base = load_settings("zipvoice-synth")
    updates: dict[str, object] = {
        "device": args.device,
        "num_threads": args.num_threads,
        "voice_file_root": prompt.parent,
        "max_input_chars": max(base.max_input_chars, len(args.text)),
        "max_voice_bytes": max(base.max_voice_bytes, prompt.stat().st_size if prompt.is_file() else 0),
    }
    if args.model_dir:
        updates["zipvoice_model_dir"] = args.model_dir
    if args.vocoder_dir:
        updates["vocos_model_dir"] = args.vocoder_dir
    settings = base.model_copy(update=updates)
    configure_process(settings)  # torch threads/denormals: the CLI's settings, as the server does
    service = SpeechService(
        settings,
        EngineRegistry(settings),
        VoiceResolver(settings),
        ReferencePrep(settings, _cli_transcriber(settings) if not args.prompt_text else None),
    )
    job = SpeechJob(
        model=args.model,
        text=args.text,
        voice="file+" + prompt.name,
        response_format=fmt,
        speed=args.speed,
        seed=args.seed,
        num_steps=args.num_steps,
        guidance_scale=args.guidance_scale,
        prompt_text=args.prompt_text,
        streaming=False,
    )
    try:
        data, result = asyncio.run(service.synthesize(job))
    except APIError as exc:
        print(f"zipvoice-synth: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
    args.out.write_bytes(data)
    audio = result.audio
    print(f"wrote {args.out} ({audio.duration:.2f} s, {audio.channels} channel(s))")


def _cli_transcriber(settings: Any) -> Any:
    from api.transcribe.factory import build_transcriber

    return build_transcriber(settings)


def export(argv: list[str] | None = None) -> None:
    """Export a ZipVoice checkpoint to ONNX (text_encoder.onnx, fm_decoder.onnx, *_int8.onnx)."""
    parser = argparse.ArgumentParser(
        prog="zipvoice-export",
        description="Export a ZipVoice model directory (model.pt, model.json, tokens.txt) to ONNX "
        "with the input/output names of upstream's published files, plus dynamic-int8 versions; "
        "the output folder has the hub's layout (graphs + model.json + tokens.txt), which the "
        "torch-free ONNX engine loads.",
    )
    parser.add_argument(
        "model_dir", type=Path, help="variant directory holding model.pt, model.json, tokens.txt"
    )
    parser.add_argument("--out", type=Path, help="output directory (default: the model directory)")
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 files")
    parser.add_argument("--int8-only", action="store_true", help="keep only the int8 files")
    parser.add_argument(
        "--sherpa",
        action="store_true",
        help="also write vocos_24khz.onnx (mels -> mag, x, y) and lexicon.txt, so the output "
        "folder is a complete sherpa-onnx ZipVoice model directory",
    )
    parser.add_argument(
        "--vocos",
        type=Path,
        help="Vocos folder (config.yaml + pytorch_model.bin) for --sherpa "
        "(default: VOCOS_MODEL_DIR or the HF cache of charactr/vocos-mel-24khz)",
    )
    parser.add_argument(
        "--lexicon-text",
        type=Path,
        action="append",
        default=[],
        help="with --sherpa: a UTF-8 text file whose words are added to lexicon.txt (repeatable; "
        "sherpa-onnx skips words missing from its lexicon)",
    )
    parser.add_argument(
        "--tokenizer", default="emilia", help="tokenizer spelling the lexicon words (default: emilia)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from api.zipvoice.onnx_export import export_onnx

    vocos_dir: Path | None = args.vocos
    if args.sherpa and vocos_dir is None:
        from api.settings import Settings
        from api.zipvoice.weights import local_vocos_dir

        vocos_dir = local_vocos_dir(Settings())
        if vocos_dir is None:
            print("zipvoice-export: --sherpa needs a Vocos folder (--vocos DIR)", file=sys.stderr)
            raise SystemExit(2)
    texts: list[str] = []
    for text_file in args.lexicon_text:
        try:
            texts.append(text_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            print(f"zipvoice-export: {text_file}: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    def progress(message: str) -> None:
        print(f"zipvoice-export: {message}", flush=True)

    try:
        result = export_onnx(
            args.model_dir, args.out, int8=not args.no_int8, fp32=not args.int8_only, progress=progress
        )
        if args.sherpa and vocos_dir is not None:
            from api.zipvoice.vocos_export import export_sherpa_extras

            progress(f"sherpa-onnx files from {vocos_dir} ...")
            result.files.update(
                export_sherpa_extras(result.out_dir, vocos_dir, tokenizer_kind=args.tokenizer, texts=texts)
            )
    except (FileNotFoundError, ValueError) as exc:
        print(f"zipvoice-export: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    for path in sorted(result.files.values()):
        print(f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
