#!/bin/sh
# Container entrypoint for zipvoice-server (docker/cpu and docker/gpu images).
#
#   entrypoint.sh [--server-flags ...]   check the model/data directories, then exec zipvoice-server
#   entrypoint.sh healthcheck            exit 0 when GET /health answers 200 (used by HEALTHCHECK)
#   entrypoint.sh <command> [args ...]   run another command (zipvoice-synth, zipvoice-export, sh ...)
#
# Missing weights are reported, not fatal: Kokoro preset voices work without the ZipVoice weights.
# The files checked are those of the engine the image runs: without torch (the default CPU image) the
# ONNX files of ONNX_PRECISION (int8: *_int8.onnx); with ENGINE=torch model.pt; with torch and
# ENGINE=auto/onnx/trt either (model.pt can be exported to ONNX on first load).
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
engine="${ENGINE:-auto}"
precision="${ONNX_PRECISION:-int8}"
found=0
usable=0
missing_any=0

# Which weights the server will load depends on the engine and on whether this image has torch
# (docker/cpu without WITH_TORCH=true has not): the torch-free ONNX engine needs only the ONNX files,
# the PyTorch engine model.pt (or model.safetensors); ENGINE=onnx/trt with torch can export model.pt.
if python -c 'import importlib.util as u, sys; sys.exit(0 if u.find_spec("torch") else 1)' 2>/dev/null; then
  has_torch=1
else
  has_torch=0
fi
case "$precision" in
  fp32) onnx_files="text_encoder.onnx fm_decoder.onnx" ;;
  *) onnx_files="text_encoder_int8.onnx fm_decoder_int8.onnx" ;;
esac
[ "$engine" = "trt" ] && onnx_files="text_encoder.onnx fm_decoder.onnx"
if [ "$has_torch" -eq 0 ] && [ "$engine" = "torch" ]; then
  log "WARNING: ENGINE=torch but torch is not installed in this image (build with --build-arg WITH_TORCH=true, or use ENGINE=auto/onnx)"
fi

# weights_rule <variant>: "pt" (model.pt), "onnx" (the ONNX files), "either", or "none" (cannot run here:
# no torch, and ENGINE=torch or a dialog variant, which has no official ONNX files)
weights_rule() {
  case "$1" in
    zipvoice_dialog*) dialog=1 ;;
    *) dialog=0 ;;
  esac
  if [ "$has_torch" -eq 0 ]; then
    if [ "$dialog" -eq 1 ] || [ "$engine" = "torch" ]; then echo none; else echo onnx; fi
  else
    if [ "$engine" = "torch" ]; then echo pt; else echo either; fi
  fi
}

if [ -n "${ZIPVOICE_MODEL_DIR:-}" ]; then
  for v in $VARIANTS; do
    d="$ZIPVOICE_MODEL_DIR/$v"
    rule=$(weights_rule "$v")
    if [ "$rule" = "none" ]; then
      if [ "$engine" = "torch" ]; then
        log "ZipVoice '$v': not available in this image (ENGINE=torch needs torch)"
      else
        log "ZipVoice '$v': not available in this image (no official ONNX files; needs torch)"
      fi
      continue
    fi
    usable=$((usable + 1))
    miss=""
    for f in model.json tokens.txt; do [ -f "$d/$f" ] || miss="$miss $f"; done
    have_pt=0
    { [ -f "$d/model.pt" ] || [ -f "$d/model.safetensors" ]; } && have_pt=1
    onnx_miss=""
    for f in $onnx_files; do [ -f "$d/$f" ] || onnx_miss="$onnx_miss $f"; done
    case "$rule" in
      pt) [ "$have_pt" -eq 1 ] || miss="$miss model.pt" ;;
      onnx) miss="$miss$onnx_miss" ;;
      either) [ "$have_pt" -eq 1 ] || [ -z "$onnx_miss" ] || miss="$miss model.pt (or$onnx_miss)" ;;
    esac
    if [ -z "$miss" ]; then
      log "ZipVoice '$v': ok ($d)"
      found=$((found + 1))
    else
      log "ZipVoice '$v': missing$miss in $d/"
      missing_any=1
    fi
  done
  log "ZipVoice variants with local weights: $found of $usable (ENGINE=$engine, torch $([ "$has_torch" -eq 1 ] && echo installed || echo 'not installed'))"
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
  if [ "$has_torch" -eq 0 ] && [ "$engine" != "torch" ]; then
    weights="<variant>/$(echo "$onnx_files" | sed 's/ /, /'), model.json, tokens.txt"
    variants="zipvoice, zipvoice_distill; the dialog variants need the torch image"
    include=""
    for f in $onnx_files model.json tokens.txt; do include="$include --include 'zipvoice_distill/$f'"; done
  else
    weights="<variant>/model.pt, model.json, tokens.txt"
    variants="zipvoice, zipvoice_distill, zipvoice_dialog, zipvoice_dialog_stereo"
    include=" --include 'zipvoice_distill/*'"
  fi
  cat >&2 <<MSG
entrypoint: ----------------------------------------------------------------------------------
entrypoint: Voice cloning needs the ZipVoice weights; put them in the host folder mounted at
entrypoint: ${ZIPVOICE_MODEL_DIR:-/models} (docker compose: \$MODELS_DIR, default ./models at the repo root):
entrypoint:   $weights   from https://huggingface.co/k2-fsa/ZipVoice
entrypoint:       (variants: $variants)
entrypoint:   vocos/config.yaml, vocos/pytorch_model.bin   from https://huggingface.co/charactr/vocos-mel-24khz
entrypoint: e.g. on the host:
entrypoint:   huggingface-cli download k2-fsa/ZipVoice$include --local-dir models
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
