#!/usr/bin/env bash
# The GPU check (see benchmarks/gpu_check.py): CUDA tests, GPU benchmarks, one Markdown results file.
#   benchmarks/gpu_check.sh [--wheels DIR] OUT_DIR     # on a machine with an NVIDIA GPU (8 minutes at most)
#   benchmarks/gpu_check.sh --dry-run OUT_DIR          # the same steps on the CPU, tiny sizes (< 1 minute)
# PYTHON selects the interpreter (default: python3). No network is used.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$root:$root/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" "$root/benchmarks/gpu_check.py" "$@"
