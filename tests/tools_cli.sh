#!/usr/bin/env bash
# Command-line tests of the programs in tools/: slimkv-plan, slimkv-prune and
# slimkv-run run as a user runs them, each started from here under RUNNER
# (qemu-aarch64 for cross builds: qemu-user hangs only on threads and forks
# inside a program). Inputs are small and synthetic: slimkv-plan --synthetic
# writes the calibration data, tests/cli_fixture the models and hidden
# states. Checked: exit codes (0 done, 2 bad arguments, 1 a bad input or a
# failure), a message naming the cause, outputs left as they were on
# failure, and outputs that are valid: plans through the public API
# (cli_fixture check-plan: slimkv_plan_load, a cache per layer) and by
# slimkv-prune, pruned models against the README's rules (cli_fixture
# check-pruned). slimkv-run without the model: its argument checks only.
# Usage: tests/tools_cli.sh BUILD [RUNNER...]   (the `test` recipe passes both)
# Exit status: the number of failed checks (at most 100).
set -u
BUILD=$1
shift
RUNNER="$*"
PLAN=$BUILD/slimkv-plan PRUNE=$BUILD/slimkv-prune RUN=$BUILD/slimkv-run FIXTURE=$BUILD/tests/cli_fixture
T=$(mktemp -d "${TMPDIR:-/tmp}/slimkv-cli.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
checks=0 failed=0

show() {
    local s="$*"
    s=${s//$T/\$T}
    echo "${s//$BUILD\//}"
}

# expect RC PATTERN PROGRAM ARGS...: PROGRAM exits with RC and its output
# (stdout and stderr) matches the extended regular expression PATTERN.
expect() {
    local want=$1 pattern=$2 rc
    shift 2
    checks=$((checks + 1))
    $RUNNER "$@" >"$T/out" 2>&1
    rc=$?
    if [ "$rc" -eq "$want" ] && grep -Eq -e "$pattern" "$T/out"; then
        show "ok   $*"
    else
        failed=$((failed + 1))
        show "FAIL $* (exit $rc, expected $want, output to match: $pattern):"
        head -n 20 "$T/out" | sed 's/^/    /'
    fi
}

# check WHAT COMMAND...: a condition on the files, tested by this shell.
check() {
    local what=$1
    shift
    checks=$((checks + 1))
    if "$@"; then
        echo "ok   $what"
    else
        failed=$((failed + 1))
        echo "FAIL $what"
    fi
}

# No output and no temporary file of the atomic writer left behind.
no_output() {
    [ ! -e "$T/x.safetensors" ] && ! ls -A "$T" "$T/sub" 2>/dev/null | grep -q '\.tmp-'
}

printf 'not a safetensors file\n' >"$T/garbage"
printf 'keep\n' >"$T/keep.safetensors"
mkdir "$T/sub"
CALIB=$T/calib.safetensors

echo "-- slimkv-plan: arguments"
expect 0 '^usage: slimkv-plan' "$PLAN" --help
expect 2 '^usage: slimkv-plan' "$PLAN"
expect 2 'unknown option --bogus' "$PLAN" --bogus
expect 2 "^--budget: expected a number .*got '1.5'" "$PLAN" --calib "$CALIB" --out "$T/x.safetensors" --budget 1.5
expect 2 "^--k-format: expected f32, f16, bf16, q8, q4, q3 or q2, got 'q5'" "$PLAN" --k-format q5
expect 2 "^--v-format: expected .*got 'Q4'" "$PLAN" --v-format Q4
expect 2 '^--queries needs a value' "$PLAN" --calib "$CALIB" --queries
expect 2 "^--dtype: expected f32 or f16, got 'f64'" "$PLAN" --synthetic "$T/x.safetensors" --dtype f64
expect 1 '^synthetic: bad shape' "$PLAN" --synthetic "$T/x.safetensors" --head-dim 30
check "no output after bad arguments" no_output

echo "-- slimkv-plan: synthetic calibration, plans loaded by the library"
SHAPE=(--layers 3 --tokens 128 --q-heads 4 --kv-heads 2 --head-dim 32)
SEARCH=(--residual 32 --context 1024 --queries 8)
expect 0 '^wrote synthetic calibration' "$PLAN" --synthetic "$CALIB" "${SHAPE[@]}" --dtype f16
expect 0 'storage: K q8, V q4, G 32, R 32, .*bytes at 1024 tokens; search per layer, K and V$' "$PLAN" \
    --calib "$CALIB" --out "$T/plan.safetensors" --budget 0.5 --k-format q8 --v-format q4 \
    "${SEARCH[@]}"
expect 0 '3 layers, K q8, V q4' "$FIXTURE" check-plan "$T/plan.safetensors" 3 2 32 q8 q4
expect 0 'search per layer, K only, RoPE pairs$' "$PLAN" --calib "$CALIB" --out "$T/pairs.safetensors" --budget 0.6 --rope-pairs --k-only \
    "${SEARCH[@]}"
expect 0 '3 layers, K q4, V q4' "$FIXTURE" check-plan "$T/pairs.safetensors" 3 2 32 q4 q4 k-only
expect 0 'storage: K f16, V q2, G 16, .*search per KV head, K and V$' "$PLAN" --calib "$CALIB" \
    --out "$T/sub/per-head.safetensors" --per-head --budget 0.4 --k-format f16 --v-format q2 --group 16 "${SEARCH[@]}"
expect 0 '3 layers, K f16, V q2' "$FIXTURE" check-plan "$T/sub/per-head.safetensors" 3 2 32 f16 q2
# calibration and plan in one run
expect 0 '^wrote plan' "$PLAN" --synthetic "$T/sub/calib2.safetensors" --layers 2 --tokens 96 \
    --q-heads 2 --kv-heads 1 --head-dim 16 --seed 7 --out "$T/sub/plan2.safetensors" --budget 0.7 --k-format bf16 \
    --v-format q8 --residual 32 --context 256 --queries 4 --align 4
expect 0 '2 layers, K bf16, V q8' "$FIXTURE" check-plan "$T/sub/plan2.safetensors" 2 1 16 bf16 q8

echo "-- slimkv-plan: bad inputs"
head -c 1000 "$CALIB" >"$T/truncated.safetensors"
expect 1 'garbage: malformed data' "$PLAN" --calib "$T/garbage" --out "$T/x.safetensors"
expect 1 'truncated.safetensors: malformed data' "$PLAN" --calib "$T/truncated.safetensors" --out "$T/x.safetensors"
expect 1 'missing.safetensors: I/O error' "$PLAN" --calib "$T/missing.safetensors" --out "$T/x.safetensors"
expect 1 ': I/O error' "$PLAN" --calib "$T" --out "$T/x.safetensors"
expect 1 'no tensor layers.0.q' "$PLAN" --calib "$T/plan.safetensors" --out "$T/x.safetensors"
expect 1 'below the smallest possible' "$PLAN" --calib "$CALIB" --out "$T/x.safetensors" --budget 1e-6 "${SEARCH[@]}"
expect 1 '^bad search parameters' "$PLAN" --calib "$CALIB" --out "$T/x.safetensors" --align 12 "${SEARCH[@]}"
expect 1 'nodir/x.safetensors: I/O error' "$PLAN" --calib "$CALIB" --out "$T/nodir/x.safetensors" "${SEARCH[@]}"
expect 1 'below the smallest possible' "$PLAN" --calib "$CALIB" --out "$T/keep.safetensors" --budget 1e-6 \
    "${SEARCH[@]}"
check "a failed run leaves the existing output as it was" grep -qx keep "$T/keep.safetensors"
check "no output or temporary file after failures" no_output

echo "-- slimkv-prune: arguments"
MODEL=$T/model.safetensors MODEL16=$T/model-bf16.safetensors
expect 0 '^usage: slimkv-prune' "$PRUNE" --help
expect 2 '^usage: slimkv-prune' "$PRUNE"
expect 2 '^usage: slimkv-prune' "$PRUNE" --model "$MODEL" --plan "$T/plan.safetensors"
expect 2 'unknown option --frob' "$PRUNE" --frob
expect 2 '^--plan needs a value' "$PRUNE" --model "$MODEL" --plan

echo "-- slimkv-prune: the plans above on synthetic models, outputs checked"
expect 0 'wrote .*16 tensors' "$FIXTURE" model "$MODEL" 3 4 2 32 48 f32
expect 0 'wrote .*22 tensors' "$FIXTURE" model "$MODEL16" 3 4 2 32 48 bf16 bias
expect 0 'wrote' "$FIXTURE" model "$T/head-dim-16.safetensors" 3 4 2 16 48 f32
expect 0 'wrote' "$FIXTURE" model "$T/four-layers.safetensors" 4 4 2 32 48 f16
expect 0 'wrote' "$FIXTURE" hidden "$T/hidden.safetensors" 64 48
expect 0 'K channels zeroed' "$PRUNE" --model "$MODEL" --plan "$T/plan.safetensors" --out "$T/pruned.safetensors"
expect 0 'copied byte for byte' "$FIXTURE" check-pruned "$MODEL" "$T/pruned.safetensors" "$T/plan.safetensors" zeroed
expect 0 'plain pruning [0-9.]+, after refit [0-9.]+' "$PRUNE" --model "$MODEL16" --plan "$T/plan.safetensors" \
    --out "$T/refit.safetensors" --refit "$T/hidden.safetensors"
check "the refit's score error is not above plain pruning's" \
    awk '/plain pruning/ { gsub(",", ""); found = 1; ok = $6 + 0 <= $3 + 0 } END { exit !(found && ok) }' "$T/out"
expect 0 'copied byte for byte' "$FIXTURE" check-pruned "$MODEL16" "$T/refit.safetensors" "$T/plan.safetensors" refit
expect 0 'K channels removed' "$PRUNE" --model "$MODEL16" --plan "$T/pairs.safetensors" --out "$T/removed.safetensors" \
    --remove
expect 0 'copied byte for byte' "$FIXTURE" check-pruned "$MODEL16" "$T/removed.safetensors" "$T/pairs.safetensors" \
    removed
expect 0 'K channels zeroed' "$PRUNE" --model "$MODEL" --plan "$T/sub/per-head.safetensors" \
    --out "$T/sub/pruned.safetensors"
expect 0 'copied byte for byte' "$FIXTURE" check-pruned "$MODEL" "$T/sub/pruned.safetensors" \
    "$T/sub/per-head.safetensors" zeroed
# the checker itself tells a wrong output apart
expect 1 'not what the plan' "$FIXTURE" check-pruned "$MODEL" "$T/pruned.safetensors" "$T/pairs.safetensors" zeroed

echo "-- slimkv-prune: bad inputs"
head -c 600 "$T/plan.safetensors" >"$T/truncated-plan.safetensors"
expect 1 'garbage: malformed data' "$PRUNE" --model "$MODEL" --plan "$T/garbage" --out "$T/keep.safetensors"
check "a failed run leaves the existing output as it was" grep -qx keep "$T/keep.safetensors"
expect 1 'truncated-plan.safetensors: malformed data' "$PRUNE" --model "$MODEL" --plan "$T/truncated-plan.safetensors" \
    --out "$T/x.safetensors"
expect 1 'calib.safetensors: malformed data' "$PRUNE" --model "$MODEL" --plan "$CALIB" --out "$T/x.safetensors"
expect 1 'garbage: malformed data' "$PRUNE" --model "$T/garbage" --plan "$T/plan.safetensors" --out "$T/x.safetensors"
expect 1 'missing.safetensors: I/O error' "$PRUNE" --model "$T/missing.safetensors" --plan "$T/plan.safetensors" \
    --out "$T/x.safetensors"
expect 1 "shapes do not fit the plan's 2 KV heads x 32 channels" "$PRUNE" --model "$T/head-dim-16.safetensors" \
    --plan "$T/plan.safetensors" --out "$T/x.safetensors"
expect 1 "more layers than the plan's 3" "$PRUNE" --model "$T/four-layers.safetensors" --plan "$T/plan.safetensors" \
    --out "$T/x.safetensors"
expect 1 'needs layers.0.hidden or calib.hidden' "$PRUNE" --model "$MODEL" --plan "$T/plan.safetensors" \
    --out "$T/x.safetensors" --refit "$CALIB"
expect 1 'nodir/x.safetensors: I/O error' "$PRUNE" --model "$MODEL" --plan "$T/plan.safetensors" \
    --out "$T/nodir/x.safetensors"
check "no output or temporary file after failures" no_output

echo "-- slimkv-run: arguments (no model needed)"
expect 0 '^usage: slimkv-run' "$RUN" --help
for bad in "--ppl $T" "--eval /dev/null" "--model $T --prompt x" "--plan $T --prompt x"; do
    # shellcheck disable=SC2086 # the option and its value
    expect 2 'not a readable regular file' "$RUN" $bad
done
expect 2 'unknown option --bogus' "$RUN" --bogus 1
expect 2 'bad or missing value for --k-format' "$RUN" --k-format q5 --prompt x
expect 2 'bad or missing value for --v-format' "$RUN" --v-format F16 --prompt x
expect 2 'bad or missing value for --policy' "$RUN" --policy static --prompt x
expect 2 'bad or missing value for --policy' "$RUN" --policy thinker --prompt x
expect 2 'bad or missing value for --ctx' "$RUN" --ctx
expect 2 'give exactly one of' "$RUN" --prompt x --ppl "$T/garbage"
expect 2 'give exactly one of' "$RUN"
# accepted names get as far as opening the model
expect 1 'make model-data' "$RUN" --model "$T/missing.gguf" --k-format q2 --v-format bf16 --policy spark --prompt x
expect 1 'make model-data' "$RUN" --model "$T/missing.gguf" --k-format f32 --v-format q8 --policy think --prompt x
expect 1 'make model-data' "$RUN" --model "$T/missing.gguf" --policy none --prompt x
expect 1 'garbage: malformed data' "$RUN" --model "$T/garbage" --prompt x

echo "tools_cli: $checks checks, $failed failed"
[ "$failed" -le 100 ] || failed=100
exit "$failed"
