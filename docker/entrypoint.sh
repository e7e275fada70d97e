#!/bin/sh
# Container entrypoint for zipvoice-server (docker/cpu and docker/gpu images).
#
#   entrypoint.sh [--server-flags ...]   check the model/data directories, then exec zipvoice-server
#   entrypoint.sh healthcheck            exit 0 when GET /health answers 200 (used by HEALTHCHECK)
#   entrypoint.sh <command> [args ...]   run another command (zipvoice-synth, zipvoice-export, sh ...)
#
# Missing weights are reported, not fatal: Kokoro preset voices work without the ZipVoice weights.
# An empty ZIPVOICE_MODEL_DIR / VOCOS_MODEL_DIR means "no local directory": with ALLOW_DOWNLOADS=true
# the server then downloads the weights into the Hugging Face cache under /cache on first use.
set -eu

log() { printf 'entrypoint: %s\n' "$*" >&2; }

if [ "${1:-}" = "healthcheck" ]; then
  exec python -c '
import os, sys, urllib.request
port = os.environ.get("PORT", "8880")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=4) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception as exc:
    print(f"healthcheck failed: {exc}", file=sys.stderr)
    sys.exit(1)
'
fi

if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
  exec "$@"  # some other command
fi

# Empty means unset (the server then uses the Hugging Face cache / downloads).
for var in ZIPVOICE_MODEL_DIR VOCOS_MODEL_DIR KOKORO_MODEL_PATH KOKORO_VOICES_PATH; do
  eval "val=\${$var-}"
  if [ -z "$val" ]; then unset "$var"; fi
done

VARIANTS="zipvoice zipvoice_distill zipvoice_dialog zipvoice_dialog_stereo"
downloads="${ALLOW_DOWNLOADS:-true}"
found=0
missing_any=0

if [ -n "${ZIPVOICE_MODEL_DIR:-}" ]; then
  for v in $VARIANTS; do
    d="$ZIPVOICE_MODEL_DIR/$v"
    miss=""
    for f in model.json tokens.txt; do [ -f "$d/$f" ] || miss="$miss $f"; done
    [ -f "$d/model.pt" ] || [ -f "$d/model.safetensors" ] || miss="$miss model.pt"
    if [ -z "$miss" ]; then
      log "ZipVoice '$v': ok ($d)"
      found=$((found + 1))
    else
      log "ZipVoice '$v': missing$miss in $d/"
      missing_any=1
    fi
  done
  log "ZipVoice variants with local weights: $found of 4"
else
  log "ZIPVOICE_MODEL_DIR unset: ZipVoice weights come from the Hugging Face cache (${HF_HOME:-~/.cache/huggingface}); ALLOW_DOWNLOADS=$downloads"
fi

if [ -n "${VOCOS_MODEL_DIR:-}" ]; then
  miss=""
  for f in config.yaml pytorch_model.bin; do [ -f "$VOCOS_MODEL_DIR/$f" ] || miss="$miss $f"; done
  if [ -z "$miss" ]; then
    log "Vocos vocoder: ok ($VOCOS_MODEL_DIR)"
  else
    log "Vocos vocoder: missing$miss in $VOCOS_MODEL_DIR/"
    missing_any=1
  fi
else
  log "VOCOS_MODEL_DIR unset: the vocoder comes from the Hugging Face cache; ALLOW_DOWNLOADS=$downloads"
fi

if [ "$missing_any" -eq 1 ]; then
  cat >&2 <<MSG
entrypoint: ----------------------------------------------------------------------------------
entrypoint: Voice cloning needs the ZipVoice weights; put them in the host folder mounted at
entrypoint: ${ZIPVOICE_MODEL_DIR:-/models} (docker compose: \$MODELS_DIR, default ./models at the repo root):
entrypoint:   <variant>/model.pt, model.json, tokens.txt   from https://huggingface.co/k2-fsa/ZipVoice
entrypoint:       (variants: zipvoice, zipvoice_distill, zipvoice_dialog, zipvoice_dialog_stereo)
entrypoint:   vocos/config.yaml, vocos/pytorch_model.bin   from https://huggingface.co/charactr/vocos-mel-24khz
entrypoint: e.g. on the host:
entrypoint:   huggingface-cli download k2-fsa/ZipVoice --include 'zipvoice_distill/*' --local-dir models
entrypoint:   huggingface-cli download charactr/vocos-mel-24khz --local-dir models/vocos
entrypoint: Or set ZIPVOICE_MODEL_DIR= and VOCOS_MODEL_DIR= (empty) with ALLOW_DOWNLOADS=true to
entrypoint: download them into /cache on first use. Kokoro preset voices work without them.
entrypoint: ----------------------------------------------------------------------------------
MSG
fi

for var in VOICES_DIR CACHE_DIR; do
  eval "dir=\${$var-}"
  [ -n "$dir" ] || continue
  mkdir -p "$dir" 2>/dev/null || true
  if [ ! -w "$dir" ]; then
    log "WARNING: $var=$dir is not writable by uid $(id -u); fix the volume's owner (e.g. chown -R $(id -u):$(id -g) on the host folder)"
  fi
done

exec zipvoice-server "$@"
