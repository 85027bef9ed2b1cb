#!/bin/bash
# One lease of a lent GPU machine (issue #17), from the repository root there, after scripts/gpu_lease/prepare.sh:
# the full tier's estimate measured on that GPU (a dry run at the real batch sizes), then the full notebooks whose
# measured estimate fits the time left, each packed into $OUT as soon as it ends (a lease can end mid-run).
#
#   DEADLINE=530 bash .devrun/run.sh          # seconds by which everything must have ended
#   DRY_ONLY=01,02,03,04,06 RUNS="02 03 01 06" (defaults; 05's pretrained LLM, 94 MB, cannot travel with the data)
#
# Results name the commit prepare.sh recorded (NUP_GIT_COMMIT; the machine gets no .git). Bring back
# $OUT/estimate.json (-> results/benchmarks/dry-run-full-<gpu>.json), the ledgers, and full-NN.tgz (results/full,
# figures/full, the executed notebook), then commit them with the GPU's name and the measured minutes.
set -u
T0=$(date +%s)
DEADLINE=${DEADLINE:-530}
PY=${PY:-python3}
DRY_ONLY=${DRY_ONLY:-01,02,03,04,06}
RUNS=${RUNS:-02 03 01 06}
left() { echo $((DEADLINE - ($(date +%s) - T0))); }
stamp() { echo "[t=$(($(date +%s) - T0))s] $*"; }
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
stamp "start"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
lscpu | grep -E "Model name|^CPU\(s\)"
[ -n "${SKIP_INSTALL:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .devrun/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
$PY -c "import torch, torchvision, papermill, ipykernel, torchattacks
print('torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no cuda')" || exit 1
stamp "wheels installed"
# data: the carried JPEG files zipped again (the same member names and bytes), MNIST as it is
mkdir -p /tmp/data && tar xJf .devrun/cifar10-jpeg.tar.xz -C /tmp/data && cp -r .devrun/MNIST /tmp/data/
$PY - <<'EOF' || exit 1
import pathlib, zipfile
root = pathlib.Path("/tmp/data")
with zipfile.ZipFile(root / "cifar10-jpeg.zip", "w", zipfile.ZIP_STORED) as zf:
    for split in ("train", "test"):
        for p in sorted((root / split).rglob("*.jpg")):
            zf.write(p, p.relative_to(root).as_posix())
EOF
export NUP_DATA_DIR=/tmp/data NUP_CACHE_DIR=/tmp/cache NUP_PROGRESS=0 NUP_GIT_COMMIT=$(cat .devrun/commit)
$PY - <<'EOF' || exit 1
import hashlib
from nup_utils import data
want = dict(line.split()[:2] for line in open(".devrun/data-sha.txt") if line.startswith(("train", "test")))
for s in ("train", "test"):
    d = data.load_cifar10(s)
    h = hashlib.sha256(d.x.numpy().tobytes() + d.y.numpy().tobytes()).hexdigest()
    print(s, len(d), "decoded pixels identical to the original zip's:", h == want[s])
    assert h == want[s]
EOF
stamp "data ready"

# 1. the estimate, measured here (kept after every notebook, so a dry run stopped part-way still counts)
timeout $(($(left) - 120)) $PY -m nup_utils.run --profile full --dry-run --only "$DRY_ONLY" ${DRY_EXTRA:-} --no-readme
stamp "dry run rc=$?"
cp build/dry-full/estimate.json "$OUT/estimate.json" 2>/dev/null
tar czf "$OUT/dry-full.tgz" build/dry-full/*.ipynb build/dry-full/ledger-*.jsonl 2>/dev/null

# 2. real full runs, in the order given, each only if its measured estimate (x1.3 + 30 s) fits the time left
for nb in $RUNS; do
  need=$($PY -c "
import json
est = json.load(open('build/dry-full/estimate.json'))['notebooks']
stem = [k for k in est if k.startswith('$nb-')]
print(int(1.3 * est[stem[0]]['total_s'] + 30) if stem and est[stem[0]]['ok'] else 999999)" 2>/dev/null || echo 999999)
  if [ "$nb" = 03 ] && [ ! -f /tmp/02.done ]; then stamp "skip 03: it attacks 02's models, and 02 did not run here"; continue; fi
  if [ "$need" -gt "$(left)" ]; then stamp "skip $nb: needs ~${need}s, $(left)s left"; continue; fi
  stamp "run $nb (estimate x1.3 + 30 s: ${need}s; $(left)s left)"
  timeout "$(left)" $PY -m nup_utils.run --profile full --only "$nb" --no-readme --budget-min 100000
  rc=$?
  stamp "ran $nb rc=$rc"
  [ "$nb" = 02 ] && [ $rc = 0 ] && touch /tmp/02.done
  tar czf "$OUT/full-$nb.tgz" results/full figures/full build/full/"$nb"-*.ipynb 2>/dev/null
done

# 3. the throughput benchmark's full grid, if time is left
if [ "$(left)" -gt 150 ]; then
  timeout $(($(left) - 10)) $PY -m nup_utils.benchmark --grid full --seconds 0.4 --repeats 3 --out "$OUT"
  stamp "benchmark rc=$?"
fi
stamp "end"
