#!/usr/bin/env bash
# Prepares what benchmarks/gpu_check.py needs on a GPU machine that can download nothing (the
# device tool's H200): wheels of titok's dependencies its image lacks (Python 3.12) in .whl/,
# and the bundled models' tokenizers in .gpu/tokenizers/. Both folders are git-ignored and
# carried to the machine. Run here, in the repository root, after `make install`.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2> /dev/null || echo /.whl/ >> .git/info/exclude
grep -qx '/.gpu/' .git/info/exclude 2> /dev/null || echo /.gpu/ >> .git/info/exclude
rm -rf .whl && mkdir -p .whl .gpu
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
    platforms+=(--platform "$p")
done
# the image has torch, transformers, peft, accelerate, typer, rich, scipy, sklearn, yaml, ...
.venv/bin/pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d .whl \
    pydantic pydantic-core annotated-types typing-inspection rapidfuzz
# rouge-score is published as a source archive only: build its (pure Python) wheel here
.venv/bin/pip wheel --quiet --no-deps -w .whl rouge-score
.venv/bin/python benchmarks/gpu_check.py --save-tokenizers .gpu/tokenizers
du -sh .whl .gpu
