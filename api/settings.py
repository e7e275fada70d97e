"""Typed settings, read from the environment (and an optional ``.env`` file).

One field per environment variable; the variable is the field name in upper case
(``max_input_chars`` → ``MAX_INPUT_CHARS``). Each field's docstring is its documentation
and is rendered into the README's settings table by ``scripts/settings_table.py``.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

OPENAI_VOICES = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "onyx",
    "nova",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("zipvoice-server"))


def _default_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir("zipvoice-server"))


def _is_mapping(annotation: Any) -> bool:
    """``dict[...]``/``Mapping[...]`` (also inside ``X | None``)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_mapping(a) for a in typing.get_args(annotation) if a is not type(None))
    return origin in (dict, Mapping) or annotation is dict


def parse_env_collection(raw: str, mapping: bool) -> Any:
    """A list or mapping setting from the environment: JSON, or the comma-separated form.

    ``["a","b"]`` or ``a,b`` → a list (items stripped, empty items dropped; use JSON for items that
    contain a comma). ``{"a":"b"}`` or ``a=b,c=d`` → a mapping. An empty value is an empty collection.
    Anything unparsable is returned unchanged, so validation reports it against the field by name.
    """
    text = raw.strip()
    if text[:1] in ("[", "{"):
        try:
            return json.loads(text)
        except ValueError:
            return raw
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not mapping:
        return items
    pairs = [item.partition("=") for item in items]
    if any(not sep or not key.strip() for key, sep, _ in pairs):
        return raw
    return {key.strip(): value.strip() for key, _, value in pairs}


def _accept_comma_lists(source: PydanticBaseSettingsSource) -> PydanticBaseSettingsSource:
    """Make an env/dotenv source read list and mapping fields with :func:`parse_env_collection`."""
    json_decode = source.decode_complex_value

    def decode(field_name: str, field: FieldInfo, value: Any) -> Any:
        if isinstance(value, str):
            return parse_env_collection(value, _is_mapping(field.annotation))
        return json_decode(field_name, field, value)

    setattr(source, "decode_complex_value", decode)  # noqa: B010 (an instance override of a method)
    return source


def expected_form(field: FieldInfo) -> str:
    """How a setting's value is written, for start-up error messages."""
    annotation = field.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    origin = typing.get_origin(annotation)
    if _is_mapping(annotation):
        return "comma-separated name=value pairs (a=b,c=d) or a JSON object"
    if origin in (list, tuple, set, frozenset):
        return "a comma-separated list (a,b) or a JSON list"
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(annotation))
    names = {bool: "true or false", int: "an integer", float: "a number", Path: "a filesystem path"}
    if annotation in names:
        bounds = [
            f"{sign} {getattr(m, attr)}"
            for m in field.metadata
            for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
            if getattr(m, attr, None) is not None
        ]
        return names[annotation] + (f" ({', '.join(bounds)})" if bounds else "")
    return "a string"


def settings_error_lines(exc: ValidationError, settings_cls: type[BaseSettings]) -> list[str]:
    """One line per bad setting: the environment variable, what is wrong, and the expected form.

    Values are never echoed (they may be API keys)."""
    lines: dict[str, str] = {}
    for error in exc.errors():
        loc = error.get("loc", ())
        name = str(loc[0]) if loc else ""
        field = settings_cls.model_fields.get(name)
        if field is None:
            lines.setdefault(name, f"invalid setting: {error.get('msg')}")
            continue
        var = name.upper()
        lines.setdefault(var, f"invalid {var}: {error.get('msg')}; expected {expected_form(field)}")
    return list(lines.values())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", use_attribute_docstrings=True, populate_by_name=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Every list/mapping setting also takes the comma-separated form (``API_KEYS=k1,k2``)."""
        return (
            init_settings,
            _accept_comma_lists(env_settings),
            _accept_comma_lists(dotenv_settings),
            file_secret_settings,
        )

    # --- server -----------------------------------------------------------------------------
    host: str = "0.0.0.0"
    """Interface the server binds to."""
    port: int = 8880
    """TCP port the server listens on."""
    log_level: str = "info"
    """Python/uvicorn log level."""
    shutdown_timeout: int = 30
    """Seconds to let in-flight requests finish after SIGTERM before exiting."""
    replica_id: str | None = None
    """This replica's id, sent as ``X-Replica-Id`` on every response and shown by /health. Unset: the Ray Serve replica tag under Ray Serve, else ``<hostname>-<pid>``."""
    max_body_bytes: int = 25 * 1024 * 1024
    """Largest request body accepted (bytes); larger bodies get 413 before they are read."""
    web_dir: Path | None = Field(default_factory=lambda: Path(__file__).resolve().parent.parent / "web")
    """Directory of the web player served at /web (unset or missing: no player)."""
    cors_origins: list[str] = Field(default_factory=list)
    """Origins allowed by CORS (comma-separated or JSON list). Empty: CORS headers are not sent."""

    # --- models and engines -----------------------------------------------------------------
    model_aliases: dict[str, str] = Field(
        default_factory=lambda: {"tts-1": "kokoro", "tts-1-hd": "kokoro", "gpt-4o-mini-tts": "kokoro"}
    )
    """OpenAI model name → backend name (``a=b,c=d`` or a JSON object)."""
    engine: Literal["auto", "torch", "onnx", "trt"] = "auto"
    """How ZipVoice runs: auto picks TensorRT on a GPU with engines, else PyTorch CUDA, else ONNX int8, else PyTorch CPU."""
    onnx_precision: Literal["fp32", "int8"] = "int8"
    """Weights of the ONNX engine: int8 (dynamic quantisation, fastest on CPU) or fp32."""
    device: str = "auto"
    """Torch device for ZipVoice (auto, cpu, cuda, cuda:1 …)."""
    num_threads: int = 0
    """CPU threads per engine (torch / onnxruntime intra-op). 0 = number of cores."""
    torch_dtype: Literal["float32", "bfloat16"] = "float32"
    """Weights and activations of the PyTorch ZipVoice engine: float32, or bfloat16 (opt-in; ~2.5x faster decoder steps on CPUs with AMX/AVX512-BF16, not bit-close to the reference)."""
    preload_models: list[str] = Field(default_factory=lambda: ["kokoro"])
    """Backends loaded and warmed at startup (comma-separated or JSON list); others load lazily on first use."""
    allow_downloads: bool = True
    """Fetch missing weights from the network (Hugging Face, GitHub releases) into the cache."""
    hub_retry_after_s: float = Field(default=300.0, ge=0)
    """After a failed Hugging Face hub probe, answer 503 at once for this many seconds before probing again."""
    hub_probe_timeout_s: float = Field(default=5.0, gt=0)
    """Timeout of the one hub probe made before a download (no retries)."""
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    """Where downloaded weights and derived files (assembled ONNX, TensorRT engines) are kept."""

    # --- Kokoro -----------------------------------------------------------------------------
    kokoro_model_path: Path | None = None
    """Kokoro ONNX model file. Unset: offline assets if installed, else download kokoro-v1.0.onnx."""
    kokoro_voices_path: Path | None = None
    """Kokoro voice pack (.bin/.npz). Unset: offline assets if installed, else download voices-v1.0.bin."""
    kokoro_default_voice: str = "jm_kumo"
    """Kokoro voice used when an OpenAI voice alias points to a voice the loaded pack lacks."""
    voice_aliases: dict[str, str] = Field(
        default_factory=lambda: {
            "alloy": "af_alloy",
            "ash": "am_adam",
            "ballad": "bm_fable",
            "coral": "af_heart",
            "echo": "am_echo",
            "fable": "bm_fable",
            "onyx": "am_onyx",
            "nova": "af_nova",
            "sage": "af_sky",
            "shimmer": "af_bella",
            "verse": "am_michael",
            "marin": "af_sarah",
            "cedar": "bm_george",
        }
    )
    """OpenAI voice name → configured voice (a preset or a registered voice); ``a=b,c=d`` or a JSON object."""

    # --- ZipVoice ---------------------------------------------------------------------------
    zipvoice_model_dir: Path | None = None
    """Directory with one folder per variant (zipvoice/, zipvoice_distill/ …) holding model.pt, model.json, tokens.txt."""
    vocos_model_dir: Path | None = None
    """Directory with the Vocos vocoder (config.yaml, pytorch_model.bin)."""
    zipvoice_max_chunk_seconds: float = 25.0
    """Longest prompt + chunk duration handed to the model in one go; long text is split to fit."""
    zipvoice_onnx_chunk_seconds: float = Field(default=10.0, gt=0)
    """Longest prompt + chunk (seconds) the torch-free ONNX engine decodes in one pass; longer text becomes several cross-faded passes cut at punctuation. Memory grows with the square of a pass (upstream's 25 s: +350 MB at 16 s of output); lower saves memory, higher keeps more context."""
    zipvoice_onnx_fast_activations: bool = True
    """On ONNX Runtime (CPU), load ZipVoice graphs with their Softplus nodes rewritten as the same function on vectorised kernels (1.4-1.5x faster int8 decoder steps); the rewritten copy is written once under CACHE_DIR/onnx-graphs. Off: load the files as they are."""
    zipvoice_remove_long_silence: bool = False
    """Shorten long pauses inside ZipVoice output (edge silence is always trimmed)."""
    prompt_cache_size: int = 32
    """Prepared prompts (features, tokens, transcript) kept in memory for reuse."""

    # --- voices -----------------------------------------------------------------------------
    voices_dir: Path = Field(default_factory=lambda: _default_data_dir() / "voices")
    """Where registered voices are stored (audio + metadata)."""
    voice_file_root: Path | None = None
    """Root for ``file+PATH`` voices. Unset: file voices are refused (403)."""
    voice_url_allowed_hosts: list[str] = Field(default_factory=list)
    """If non-empty, ``url+`` voices may only come from these hosts (comma-separated or JSON list)."""
    voice_url_allowed_networks: list[str] = Field(default_factory=list)
    """CIDR ranges ``url+`` voices may reach although not public (your own networks, e.g. ``10.0.0.0/8``; comma-separated or JSON). Empty: public addresses only."""
    voice_url_timeout: float = 10.0
    """Total time allowed to fetch a ``url+`` voice (seconds)."""
    max_voice_bytes: int = 10 * 1024 * 1024
    """Largest reference audio accepted from any source (bytes, before decoding)."""
    max_reference_seconds: float = 60.0
    """Reference audio longer than this is refused when decoding (seconds)."""
    max_prompt_seconds: float = 10.0
    """Reference clips are cut (at a pause) to at most this long before cloning."""
    max_voices_per_key: int = 0
    """Registered voices one API key (namespace) may keep; a registration beyond it gets 403. 0 = unlimited."""

    # --- requests ---------------------------------------------------------------------------
    max_input_chars: int = 4096
    """Longest ``input`` accepted by /v1/audio/speech (characters)."""
    max_transcript_chars: int = 2000
    """Longest reference transcript (``transcript``, ``prompt_text``), JSON or multipart (characters, after stripping)."""
    max_concurrency: int = 1
    """Syntheses running at once."""
    max_queue: int = 8
    """Requests waiting for a synthesis slot; beyond this, 429."""
    batch_max_size: int = Field(default=1, ge=1)
    """Most ZipVoice sampler calls (text chunks of concurrent requests with the same model, steps, guidance and t_shift) run as one padded batch on the PyTorch engine. 1 = off. Requests keep their synthesis slots while batched, so set MAX_CONCURRENCY at least this high; the ONNX engine stays sequential."""
    batch_window_ms: float = Field(default=20.0, ge=0, le=1000)
    """How long the first sampler call of a batch waits for others to join (milliseconds); a batch starts earlier when full or when every request in the engine is waiting."""
    batch_workers: int = Field(default=0, ge=0, le=16)
    """Batches run at the same time (each its own thread). 0 = auto: 2 on CPU, where a second run fills the cores while the first dispatches ops, and 1 on CUDA (one big batch). Waiting calls are shared out among free workers."""
    reference_concurrency: int = 2
    """Reference preparations (url+ fetch, decode, clean-up, Whisper) running at once; separate from synthesis slots."""
    reference_queue: int = 8
    """Requests waiting for a reference-preparation slot; beyond this, 429."""

    # --- transcription ----------------------------------------------------------------------
    whisper_model: str = "base"
    """faster-whisper model size or local directory (auto-transcription of reference clips)."""
    whisper_engine: Literal["faster-whisper", "openai-whisper"] = "faster-whisper"
    """Transcriber implementation."""
    align_whisper_model: str = "tiny.en"
    """Whisper model (size or local directory) that times the words of captioned speech (forced alignment); `tiny.en` aligns better than `base`. The same value as `WHISPER_MODEL` shares that model."""

    # --- auth -------------------------------------------------------------------------------
    api_keys: list[str] = Field(default_factory=list)
    """Accepted API keys (comma-separated or JSON list). Empty: no authentication."""
    admin_api_keys: list[str] = Field(default_factory=list)
    """API keys that also see and manage every namespace's voices (comma-separated or JSON list)."""

    # --- shared state (several replicas) ----------------------------------------------------
    voice_store_url: str | None = None
    """``postgresql://…``: keep registered voices in PostgreSQL, shared by every replica. Unset: files under VOICES_DIR."""
    redis_url: str | None = None
    """``redis://…``: per-key limits, usage and the Whisper transcript cache shared by every replica. Unset: in-process."""
    rate_limit_rpm: int = Field(default=0, ge=0)
    """Requests per minute per API key on every authenticated route (token bucket; 429 + Retry-After). 0 = off."""
    quota_audio_seconds_per_day: float = Field(default=0.0, ge=0)
    """Seconds of audio one API key may produce per UTC day (429 until midnight UTC once used up). 0 = off."""

    @field_validator("voice_url_allowed_networks")
    @classmethod
    def _networks_are_cidr(cls, value: list[str]) -> list[str]:
        import ipaddress

        for net in value:
            try:
                ipaddress.ip_network(net.strip(), strict=False)
            except ValueError:
                raise ValueError(f"not a CIDR range: {net[:60]!r} (expected e.g. 10.0.0.0/8)") from None
        return value
