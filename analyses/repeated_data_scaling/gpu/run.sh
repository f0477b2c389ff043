#!/bin/bash
# The scaling study on one CUDA machine (issue 21's second set of results): the same design
# (design.py, base.yaml), trained by run_study.py with the checkout's code (not the 1a77cd7
# worktree the 2-core study uses), WORKERS processes sharing the GPU, stopped at a wall-clock
# budget (runs resume: a second call on the same machine goes on from the complete runs).
# First the default score battery runs on CUDA against the CPU (a CUDA test); the runs are
# scored on the GPU only if it passes, else on the CPU. The complete runs are archived as
# report.py's archive (the files of results/runs/) under $OUT/results/runs/; the GPU, the
# test's line and the wall times go to $OUT/gpu.txt. gpu/NOTES.md has what ran.
#
#   OUT=/tmp/gpu_out WORKERS=15 DEADLINE=520 END=580 bash analyses/repeated_data_scaling/gpu/run.sh
#
# DEADLINE: seconds from the start by which the study and its archive end (runs still going are
# stopped; they resume on a second call to the same machine). The other CUDA tests (`pytest -m
# cuda`, the battery case already run) go alongside the study on one core, their lines appended
# to cuda_tests.log. END: when the whole script ends; if at least 90 s are left after the
# archive, benchmarks/gpu_check.py's throughput and battery parts run in them (gpu_check.log).
#
# Then, here, the GPU set's report from that archive alone (no CPU run mixed in):
#   mkdir -p analyses/repeated_data_scaling/gpu/results && cp -r /tmp/gpu_out/results/runs analyses/repeated_data_scaling/gpu/results/
#   python analyses/repeated_data_scaling/report.py --out /tmp/empty_dir --archive analyses/repeated_data_scaling/gpu/results/runs \
#       --results analyses/repeated_data_scaling/gpu --formats html
#
# Where the machine's image lacks them, TransformerLens 3.9.0 and what it and repeatlens
# import (beartype, better-abc, fancy-einsum, typeguard, pydantic, pydantic-core,
# annotated-types, typing-inspection, datasets, dill, multiprocess) travel as wheels in .whl/,
# installed into /tmp/site when present.
set -u
T0=$(date +%s)
OUT=${OUT:?set OUT to a folder for the results}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
PY=${PY:-python3}
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 CUBLAS_WORKSPACE_CONFIG=:4096:8 PYTHONUNBUFFERED=1
WORKERS=${WORKERS:-12}; BUDGET=${BUDGET:-100000}; RUNS=${RUNS:-runs/gpu_study}; SIZES=${SIZES:-rot2-d16,rot2-d24,rot2-d32,rot2-d48,rot2-d64,rot2-d128}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -2
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '-')"
  echo "cores $(nproc --all) workers $WORKERS budget ${BUDGET}s sizes $SIZES"; } > "$OUT/gpu.txt" 2>&1
# Score on the GPU only if the default battery gives the CPU's numbers there (a CUDA test, ~30 s).
SCORE_DEVICE=cpu
if timeout -k 5 "${CHECK_BUDGET:-75}" $PY -m pytest -q -x -p no:cacheprovider \
     "tests/test_analysis.py::test_analyze_on_cuda_gives_the_cpu_rows_for_every_score[default-battery]" > "$OUT/cuda_tests.log" 2>&1 \
   && grep -q " passed" "$OUT/cuda_tests.log" && ! grep -q "skipped" "$OUT/cuda_tests.log"; then SCORE_DEVICE=cuda; fi
echo "battery on CUDA: $(tail -1 "$OUT/cuda_tests.log"); scoring on $SCORE_DEVICE; $(( $(date +%s) - T0 )) s so far" >> "$OUT/gpu.txt"
# The other CUDA tests, alongside the study (one core, a little of the GPU).
# Only the files that hold CUDA tests (gpu_check.py lists them): collecting all of tests/ fails there on modules that
# import plotly, which that machine's image lacks.
CUDA_TEST_FILES=$($PY benchmarks/gpu_check.py --list-cuda-tests)
( timeout -k 5 "${TESTS_BUDGET:-300}" $PY -m pytest -q -p no:cacheprovider -m cuda $CUDA_TEST_FILES \
    --deselect "tests/test_analysis.py::test_analyze_on_cuda_gives_the_cpu_rows_for_every_score[default-battery]" \
    > "$OUT/cuda_rest.tmp" 2>&1; echo "exit $?" >> "$OUT/cuda_rest.tmp" ) &
TESTS_PID=$!
S0=$(date +%s)
LEFT=$(( ${DEADLINE:-100000} - (S0 - T0) - 35 ))  # leaves ~35 s of DEADLINE for the archive
[ "$LEFT" -lt "$BUDGET" ] && BUDGET=$LEFT
timeout -k 10 "$BUDGET" $PY analyses/repeated_data_scaling/run_study.py --sizes "$SIZES" --train-only --workers "$WORKERS" \
  --score-device "$SCORE_DEVICE" --out "$RUNS" > "$OUT/study.log" 2>&1
rc=$?
echo "study rc $rc, $(( $(date +%s) - S0 )) s of training and scoring (budget ${BUDGET}s); $(ls $RUNS/*/complete.json 2>/dev/null | wc -l) runs trained" >> "$OUT/gpu.txt"
mkdir -p /tmp/no_archive
$PY analyses/repeated_data_scaling/report.py --out "$RUNS" --results "$OUT" --archive /tmp/no_archive --archive-only >> "$OUT/study.log" 2>&1
echo "archive rc $?: $(tail -1 "$OUT/study.log"); total $(( $(date +%s) - T0 )) s" >> "$OUT/gpu.txt"
grep -h -m3 -i "error\|Traceback" "$OUT/study.log" >> "$OUT/gpu.txt"
wait $TESTS_PID
{ echo; echo "== pytest -m cuda, the other cases (alongside the study)"; cat "$OUT/cuda_rest.tmp"; } >> "$OUT/cuda_tests.log"
rm -f "$OUT/cuda_rest.tmp"
echo "other CUDA tests: $(grep -E "passed|failed|error|skipped" "$OUT/cuda_tests.log" | tail -1)" >> "$OUT/gpu.txt"
LEFT=$(( ${END:-0} - ($(date +%s) - T0) ))
if [ "$LEFT" -ge 90 ]; then  # training throughput and MFU at GPT-2 small's shape, the battery there
  timeout -k 5 "$LEFT" $PY benchmarks/gpu_check.py --skip-tests > "$OUT/gpu_check.log" 2>&1
  echo "gpu_check rc $? in ${LEFT}s: $(grep -E "train_ratio|gpu_check=" "$OUT/gpu_check.log" | tr '\n' ' ')" >> "$OUT/gpu.txt"
fi
cat "$OUT/gpu.txt"
