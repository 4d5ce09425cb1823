#!/usr/bin/env bash
# TIMIT-style phoneme recognition, stage by stage:
#   1 prepare   read (or synthesise) the corpus -> <prepare.out>/<split>.jsonl, summary.json
#   2 features  fbank/MFCC feature caches of train, dev and the decoded splits
#   3 train     BLSTM-CTC into exp/timit/<name>/ (best.pt chosen on dev, last.pt)
#   4 decode    greedy decoding of dev and core test -> results/<split>/{ref,hyp}.txt
#   5 score     PER (39 phones) with S/D/I from the ref/hyp files
# Usage: recipes/timit/run.sh [--stage N] [--stop-stage N] [--experiment NAME] [overrides]
#   e.g. recipes/timit/run.sh --experiment graves2013_ctc corpus.root=/data/TIMIT
set -euo pipefail
stage=1
stop_stage=5
experiment=synthetic
while [[ $# -gt 0 ]]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --experiment) experiment=$2; shift 2 ;;
    *) break ;;
  esac
done
here=$(cd "$(dirname "$0")" && pwd)
args=("hydra.searchpath=[file://$here/conf]" "+experiment=$experiment" "$@")

run_stage() { [[ $stage -le $1 && $1 -le $stop_stage ]]; }
trap 'echo "== done in ${SECONDS}s"' EXIT

if run_stage 1; then echo "== stage 1: prepare"; recog-prepare "${args[@]}"; fi
if run_stage 2; then echo "== stage 2: features"; recog-features "${args[@]}"; fi
if run_stage 3; then echo "== stage 3: train"; recog-train "${args[@]}"; fi
if run_stage 4; then echo "== stage 4: decode"; recog-decode "${args[@]}"; fi
if run_stage 5; then
  echo "== stage 5: score (PER after folding to 39 phones)"
  exp_dir=$(recog-decode "${args[@]}" --cfg job --resolve | sed -n 's/^exp_dir: //p')
  for split in dev test; do
    echo "-- $split"
    recog-score "$exp_dir/results/$split/ref.txt" "$exp_dir/results/$split/hyp.txt" \
      | tail -n 1
  done
fi
