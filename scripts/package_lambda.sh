#!/usr/bin/env bash
# Build the Lambda deployment package without Docker and without a local Python 3.12:
#   build/lambda/        lambda_src/ + manylinux aarch64 wheels for CPython 3.12
#   build/lambda.zip     the same, zipped (what Lambda receives)
#   build/template.yaml  template.yaml with CodeUri pointing at build/lambda/
#                        (deploy it with `sam deploy --template-file build/template.yaml`)
# boto3/botocore/s3transfer are left out: the python3.12 Lambda runtime ships them.
# Versions are exactly lambda_src/requirements.lock (`make lock`), which the venv the tests run in
# is installed with too; --no-pin takes the newest wheels allowed by requirements.txt instead.
# --verify-imports PY312 also builds an x86_64 twin and imports the three handlers in it
# with that (local) CPython 3.12 interpreter, proving the bundle is complete.
# --smoke PYTHON runs PYTHON -I -S (no site-packages: only the bundle and the stdlib) on the built
# bundle: imports the engine and processes an image through libvips. Meant for a variant built for
# the local machine (--arch $(uname -m) --python-version <local>); tests/integration/test_package_lambda.py.
# --bytecode PYTHON compiles the bundle's .py files to __pycache__/*.pyc with PYTHON, which must be
# the runtime's version (default: python<version> on PATH, e.g. python3.12). Lambda's /var/task is
# read-only, so without them every cold start compiles numpy, pydantic, Pillow, pyvips and our code
# from source (~0.5 s of CPU here). Unchecked-hash pycs: the sources in a bundle never change.
# No such interpreter: the bundle is built without bytecode and the script says so (--no-bytecode:
# on purpose, quietly).
#
# libvips comes from pyvips-binary (one self-contained libvips .so, manylinux_2_28). pyvips itself
# is published as an sdist only: it is built here into a pure-Python wheel (py3-none-any), the
# only package allowed to come from source (SDIST_OK). Every bundled ELF file's GLIBC symbol
# versions are checked against the runtime's glibc (2.34 on the python3.12 runtime, AL2023).
#
# Usage: scripts/package_lambda.sh [--python-version 3.12] [--arch aarch64|x86_64] [--out build]
#                                  [--no-pin] [--verify-imports /path/to/python3.12] [--smoke PYTHON]
#                                  [--bytecode PYTHON | --no-bytecode]
set -euo pipefail
cd "$(dirname "$0")/.."

PY_VERSION=3.12
ARCH=aarch64
OUT=build
PYTHON=${PYTHON:-.venv/bin/python}
PIN=1
VERIFY_PY=""
SMOKE_PY=""
BYTECODE_PY=""
BYTECODE=1
GLIBC_MAX=2.34  # Amazon Linux 2023 (python3.12 runtime)
SDIST_OK=(pyvips)  # pure-Python packages published without wheels
while [[ $# -gt 0 ]]; do
  case "$1" in
    --python-version) PY_VERSION=$2; shift 2 ;;
    --arch) ARCH=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --no-pin) PIN=0; shift ;;
    --verify-imports) VERIFY_PY=$2; shift 2 ;;
    --smoke) SMOKE_PY=$2; shift 2 ;;
    --bytecode) BYTECODE_PY=$2; shift 2 ;;
    --no-bytecode) BYTECODE=0; shift ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

PKG="$OUT/lambda"
ZIP="$OUT/lambda.zip"
REQS="$OUT/requirements.lambda.txt"
# Runtime-shipped packages we do not bundle (lowercase, as pip normalises names).
EXCLUDE_RE='^(boto3|botocore|s3transfer)([<>=!~ ;\[]|$)'

rm -rf "$PKG" "$ZIP"
mkdir -p "$PKG"

# 1. the lock (or, with --no-pin, the ranges) minus what the runtime provides
SOURCE=lambda_src/requirements.lock
(( PIN )) || SOURCE=lambda_src/requirements.txt
grep -vE '^\s*(#|$)' "$SOURCE" | grep -viE "$EXCLUDE_RE" > "$REQS"
echo "== bundling ($SOURCE): $(tr '\n' ' ' < "$REQS")"
CONSTRAINTS=()
if (( PIN )); then
  CONSTRAINTS=(--constraint lambda_src/requirements.lock)
fi

# 2a. pure-Python wheels for the SDIST_OK packages (built here; refused unless py3-none-any)
WHEELS="$OUT/wheels"
rm -rf "$WHEELS"; mkdir -p "$WHEELS"
for name in "${SDIST_OK[@]}"; do
  spec=$(grep -iE "^${name}([<>=!~ ;]|$)" "$REQS" | sed -n '1{s/ *#.*//;p;}' || true)
  [[ -z $spec ]] && continue
  "$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps --no-binary "$name" \
    -w "$WHEELS" "$spec" "${CONSTRAINTS[@]}"
done
if ls "$WHEELS"/*.whl >/dev/null 2>&1 && ls "$WHEELS"/*.whl | grep -v -- '-py3-none-any\.whl$'; then
  echo "== a package built from source is not pure Python (above)" >&2; exit 1
fi

# 2b. wheels for the Lambda platform (Amazon Linux 2023, glibc 2.34): binary only, never sdists.
#     manylinux_2_28 (pyvips-binary) = built against glibc 2.28, runs on any glibc >= 2.28.
"$PYTHON" -m pip install --quiet --disable-pip-version-check --no-compile \
  --platform "manylinux2014_${ARCH}" \
  --platform "manylinux_2_28_${ARCH}" \
  --platform "manylinux_2_34_${ARCH}" \
  --only-binary=:all: --find-links "$WHEELS" --implementation cp --python-version "$PY_VERSION" \
  --target "$PKG" -r "$REQS" "${CONSTRAINTS[@]}"

# A dependency must not have dragged the excluded packages back in.
for name in boto3 botocore s3transfer; do
  if [[ -d "$PKG/$name" ]]; then
    echo "== $name was pulled in by a dependency; removing it (the runtime ships it)" >&2
    rm -rf "$PKG/$name" "$PKG/$name"-*.dist-info
  fi
done

# 3. our code and its data (presets.json), no caches, no requirements file
(cd lambda_src && find imagepipe -name '__pycache__' -prune -o -type f \( -name '*.py' -o -name '*.json' \) -print) |
  while read -r f; do mkdir -p "$PKG/$(dirname "$f")"; cp "lambda_src/$f" "$PKG/$f"; done
find "$PKG" -name '__pycache__' -type d -prune -exec rm -rf {} +

# 3b. bytecode for the runtime's Python (see --bytecode above): pyc files are specific to a CPython
#     version, so only an interpreter of PY_VERSION can write them; never our build interpreter's.
#     Packages' own test suites (tests/, test/) are left out: nothing imports them at run time.
pyver() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true; }
if (( BYTECODE )); then
  if [[ -z $BYTECODE_PY ]]; then  # python3.12 on PATH, if it runs (a pyenv shim may not)
    found=$(command -v "python$PY_VERSION" || true)
    [[ -n $found && $(pyver "$found") == "$PY_VERSION" ]] && BYTECODE_PY=$found
  fi
  if [[ -z $BYTECODE_PY ]]; then
    echo "== WARNING: no working python$PY_VERSION on PATH: the bundle has no bytecode, so every cold start" \
         "compiles its modules from source (~0.5 s CPU); give --bytecode /path/to/python$PY_VERSION (or --no-bytecode)" >&2
  elif [[ $(pyver "$BYTECODE_PY") != "$PY_VERSION" ]]; then
    echo "== --bytecode $BYTECODE_PY is not a working Python $PY_VERSION" >&2; exit 1
  else
    "$BYTECODE_PY" -I -m compileall -q -j 0 --invalidation-mode unchecked-hash -x "/tests?/" "$PKG" >/dev/null
    echo "== bytecode: $(find "$PKG" -name '*.pyc' | wc -l) .pyc files (Python $PY_VERSION, unchecked-hash)"
  fi
fi

# 4. wrong-architecture binaries would fail only at import time on Lambda: refuse them now
if command -v file >/dev/null; then
  want=$([[ $ARCH == aarch64 ]] && echo "ARM aarch64" || echo "x86-64")
  bad=$(find "$PKG" -name '*.so*' -type f -print0 | xargs -0 -r file | grep ELF | grep -v "$want" || true)
  if [[ -n $bad ]]; then echo "== wrong-architecture binaries:" >&2; echo "$bad" >&2; exit 1; fi
fi

# 4b. every ELF file must run on the runtime's glibc: no GLIBC_x.y symbol version above GLIBC_MAX
if command -v readelf >/dev/null; then
  newest=$(find "$PKG" -name '*.so*' -type f -print0 | xargs -0 -r readelf -V --wide 2>/dev/null |
           grep -oE 'GLIBC_[0-9]+\.[0-9]+' | sed 's/GLIBC_//' | sort -V | tail -1)
  echo "== newest glibc symbol version needed: ${newest:-none} (runtime has $GLIBC_MAX)"
  if [[ -n $newest && $(printf '%s\n%s\n' "$newest" "$GLIBC_MAX" | sort -V | tail -1) != "$GLIBC_MAX" ]]; then
    echo "== a bundled library needs glibc $newest > $GLIBC_MAX" >&2; exit 1
  fi
fi
if ! ls "$PKG"/pyvips_binary* >/dev/null 2>&1; then
  echo "== pyvips-binary (libvips) is missing from the bundle: IMAGEPIPE_ENGINE=vips would fail" >&2; exit 1
fi

# 5. zip (deterministic order) and a template whose CodeUri is the built directory
"$PYTHON" - "$PKG" "$ZIP" <<'PY'
import os, sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(src) for f in fs)
with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
    for path in files:
        zf.write(path, os.path.relpath(path, src))
PY
sed 's#CodeUri: lambda_src/#CodeUri: lambda/#' template.yaml > "$OUT/template.yaml"

unzipped=$(du -sb "$PKG" | cut -f1)
zipped=$(stat -c %s "$ZIP")
echo "== versions: $(ls "$PKG" | sed -n 's/\.dist-info$//p' | tr '\n' ' ')"
echo "== largest:"
# sed, not head: head exits after 6 lines, and under pipefail a sort still writing its (> 4 KiB)
# output then dies of SIGPIPE and fails the build (exit 141) at random
du -sm "$PKG"/* | sort -rn | sed -n '1,6s/^/   /p'
printf '== %s: %d bytes unzipped (%.1f MiB; Lambda limit 250 MiB)\n' "$PKG" "$unzipped" "$(echo "$unzipped/1048576" | bc -l)"
printf '== %s: %d bytes zipped (%.1f MiB; direct-upload limit 50 MiB)\n' "$ZIP" "$zipped" "$(echo "$zipped/1048576" | bc -l)"
if (( unzipped > 262144000 )); then echo "package exceeds Lambda's 250 MiB unzipped limit" >&2; exit 1; fi

# 6. optional: the same bundle for x86_64 (+ boto3, as the runtime has it), imported by a
#    local CPython of the runtime's version. Catches missing modules and version-specific syntax.
if [[ -n $VERIFY_PY ]]; then
  TWIN="$OUT/verify-x86_64"
  rm -rf "$TWIN"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-compile \
    --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_34_x86_64 \
    --only-binary=:all: --implementation cp --python-version "$PY_VERSION" \
    --target "$TWIN" -r "$REQS" boto3 "${CONSTRAINTS[@]}"
  cp -r "$PKG/imagepipe" "$TWIN/"
  (cd "$TWIN" && env -i PATH=/usr/bin:/bin AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 \
      AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x \
      "$VERIFY_PY" -I -c '
import sys
sys.path.insert(0, ".")
import imagepipe.handlers.api, imagepipe.handlers.processor, imagepipe.handlers.reconciler
import PIL.features
print("== import check:", sys.version.split()[0], "webp", PIL.features.check("webp"), "avif", PIL.features.check("avif"))
')
  rm -rf "$TWIN"
fi

# 7. optional: the built bundle alone (no site-packages) imports the engine and processes an image
#    through libvips, with the template's engine settings.
if [[ -n $SMOKE_PY ]]; then
  (cd "$PKG" && env -i PATH=/usr/bin:/bin IMAGEPIPE_ENGINE=vips IMAGEPIPE_VIPS_CONCURRENCY=1 \
      "$SMOKE_PY" -I -S -c '
import io, sys
sys.path.insert(0, ".")
from PIL import Image
import imagepipe.core as core
import pyvips
assert all(not p.endswith("site-packages") for p in sys.path), sys.path
buf = io.BytesIO()
Image.new("RGB", (640, 480), (200, 30, 60)).save(buf, "JPEG", quality=90)
r = core.process(buf.getvalue(), {"resize": {"width": 160}, "format": "webp"})
assert r.facts["output"]["width"] == 160 and r.facts["fast_paths"][0].startswith("vips_"), r.facts
print("== smoke:", sys.version.split()[0], "libvips", pyvips.version(0), pyvips.version(1), pyvips.version(2),
      "from", pyvips.__file__.rsplit("/", 2)[0], r.facts["fast_paths"], r.facts["output"]["bytes"], "bytes webp")
')
fi
