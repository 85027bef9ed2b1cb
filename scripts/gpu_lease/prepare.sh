#!/bin/bash
# Prepare .devrun/ for a lease of a GPU machine that has its own Python (3.12), torch and CUDA but no registry and
# none of the project's data: the project's other pins as hash-checked wheels, CIFAR-10 and MNIST, the commit.
#
#   bash scripts/gpu_lease/prepare.sh        # from a clean work tree; writes .devrun/ (ignored by git)
#   then on the machine, carrying .devrun:   bash .devrun/run.sh   (see run.sh)
#
# CIFAR-10 travels as the same JPEG files as $NUP_DATA_DIR/cifar10-jpeg.zip, in a tar.xz (about 18 MB: the zip is
# 59 MB and a call carries 64 MiB with the repository); run.sh zips them again and checks that the decoded pixels
# equal those of the original zip (checksums written here).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
DATA=${NUP_DATA_DIR:-../shared/data}
PY=${PY:-.venv/bin/python}
D=.devrun
[ -z "$(git status --porcelain)" ] || { echo "error: commit first: the results will name this commit" >&2; exit 1; }
mkdir -p "$D/whl" .git/info
grep -qx "/.devrun/" .git/info/exclude 2>/dev/null || echo "/.devrun/" >>.git/info/exclude
# the pins the machine's image lacks (its package list: the device tool's KINDS.md), hashes from requirements.lock
MISSING="papermill nbclient nbformat ipykernel ipython jupyter-client jupyter-core traitlets comm debugpy
matplotlib-inline nest-asyncio2 pyzmq tornado jedi parso pexpect ptyprocess prompt-toolkit wcwidth stack-data
asttokens executing pure-eval ipython-pygments-lexers entrypoints tenacity fastjsonschema jsonschema
jsonschema-specifications referencing rpds-py platformdirs torchattacks"
$PY - "$MISSING" >"$D/req-device.txt" <<'PYEOF'
import re, sys
want = set(sys.argv[1].split())
blocks = re.split(r"\n(?=[a-zA-Z0-9])", open("requirements.lock").read())
kept = [b for b in blocks if (m := re.match(r"([A-Za-z0-9_.-]+)==", b)) and m.group(1).lower() in want]
missing = want - {re.match(r"([A-Za-z0-9_.-]+)==", b).group(1).lower() for b in kept}
assert not missing, f"not in requirements.lock: {missing}"
print("\n".join("\n".join(ln for ln in b.splitlines() if not ln.strip().startswith("#")) for b in kept))
PYEOF
$PY -m pip download -q --require-hashes --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  $(for n in 17 24 26 27 28 31 34; do echo "--platform manylinux_2_${n}_x86_64"; done) \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$D/whl" -r "$D/req-device.txt"
# data
tmp=$(mktemp -d)
unzip -q "$DATA/cifar10-jpeg.zip" -d "$tmp"
(cd "$tmp" && tar cf - --sort=name train test | xz -9e -T2 >"$OLDPWD/$D/cifar10-jpeg.tar.xz")
rm -rf "$tmp" "$D/MNIST"
cp -r "$DATA/MNIST" "$D/" && chmod -R u+w "$D/MNIST"
$PY - "$DATA/cifar10-jpeg.zip" >"$D/data-sha.txt" <<'PYEOF'
import hashlib, sys
from nup_utils import data
for s in ("train", "test"):
    x, y = data.read_imagefolder_zip(sys.argv[1], s)
    print(s, hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest())
PYEOF
git rev-parse HEAD >"$D/commit"
cp scripts/gpu_lease/run.sh "$D/run.sh"
du -sh "$D"
