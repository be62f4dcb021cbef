#!/usr/bin/env bash
# GPU check on a lent machine without network: install the wheels brought along, then run bench/gpu_check.py.
#
#   bash bench/gpu_check.sh OUTPUT.json [gpu_check.py options, e.g. --time-limit 420]
#
# Wheels come from $GPU_CHECK_WHEELS (default bench/wheels/), made beforehand with the `pip download` command in
# BENCHMARKS.md ("GPU check"); they are installed with --no-deps into $GPU_CHECK_SITE (default /tmp/gpu_check_site)
# and put first on PYTHONPATH, over the machine's own torch/transformers/accelerate.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
wheels=${GPU_CHECK_WHEELS:-$here/wheels}
site=${GPU_CHECK_SITE:-/tmp/gpu_check_site}
python=${PYTHON:-python3}
if [[ $# -lt 1 || $1 == -* ]]; then
    echo "usage: bash bench/gpu_check.sh OUTPUT.json [gpu_check.py options]" >&2
    exit 2
fi
out=$1
shift
missing=()
for name in trl datasets peft dill multiprocess; do  # liger_kernel is optional: its section is then skipped
    compgen -G "$wheels/$name-*.whl" >/dev/null || missing+=("$name")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "gpu_check.sh: error: no wheel for ${missing[*]} in $wheels; download them with the pip download command" \
         "in BENCHMARKS.md (GPU check) and bring that folder along" >&2
    exit 2
fi
"$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$wheels"/*.whl
export PYTHONPATH="$site:$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
       TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null || true
exec "$python" "$here/gpu_check.py" --output "$out" "$@"
