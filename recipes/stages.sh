#!/usr/bin/env bash
# The stages every recipe runs; a recipe's run.sh sets recipe_dir, experiment and
# score_units ("NAME:recog-score options" per metric) and sources this file.
#   1 prepare   read (or synthesise) the corpus -> <prepare.out>/<split>.jsonl, summary.json
#   2 features  feature caches of the train, dev and decoded splits
#   3 train     BLSTM-CTC into exp/<recipe>/<name>/ (best.pt chosen on dev, last.pt)
#   4 decode    greedy decoding of the dev and test splits -> results/<split>/{ref,hyp}.txt
#   5 score     error rates with S/D/I from the ref/hyp files (recog-score)
#   6 lm        beam search (results_beam/); a token n-gram trained on the train split with
#               its weight and bonus tuned on dev (recog-lm), then beam + LM
#               (results_beam_lm/) and each of $beam_extra (e.g. beam_lexicon)
# Stage 3 runs recog-finetune instead of recog-train for experiments named finetune*.
# Options: [--stage N] [--stop-stage N] [--experiment NAME] [--nproc N] [Hydra overrides...]
#   --nproc N: train with N processes on this machine (torchrun, trainer=ddp); auto: one
#   per available core, at most 2 (the most measured: RESULTS of recipes/fsdd, session 13)
set -euo pipefail
stage=1
stop_stage=6
source "$recipe_dir/../options.sh"
if [[ ${nproc:-1} == auto ]]; then nproc=$(( $(nproc) >= 2 ? 2 : 1 )); fi
if ! [[ ${nproc:-1} =~ ^[1-9][0-9]*$ ]]; then
  echo "error: --nproc $nproc: a number of training processes, or auto" >&2; exit 2
fi
# an experiment named finetune* starts from a checkpoint (finetune.checkpoint=...)
if [[ $experiment == finetune* ]]; then train_verb=recog-finetune; fi
args=("hydra.searchpath=[file://$recipe_dir/conf]" "+experiment=$experiment" "${overrides[@]}")

if run_stage 1; then echo "== stage 1: prepare"; recog-prepare "${args[@]}"; fi
if run_stage 2; then echo "== stage 2: features"; recog-features "${args[@]}"; fi
if run_stage 3; then
  echo "== stage 3: train"
  if [[ ${nproc:-1} -gt 1 ]]; then
    torchrun --standalone --nproc-per-node="$nproc" --no-python "${train_verb:-recog-train}" trainer=ddp "${args[@]}"
  else
    "${train_verb:-recog-train}" "${args[@]}"
  fi
fi
if run_stage 4; then echo "== stage 4: decode"; recog-decode "${args[@]}"; fi
if run_stage 5; then
  echo "== stage 5: score"
  resolved=$(recog-decode "${args[@]}" --cfg job --resolve)
  exp_dir=$(sed -n 's/^exp_dir: //p' <<<"$resolved")
  if ! compgen -G "$exp_dir/results/*/hyp.txt" >/dev/null; then
    echo "error: $exp_dir/results/: nothing decoded to score: run stage 4 (decode) first" >&2
    exit 2
  fi
  # recog-decode wrote each metric's report and scores.json already: recog-score re-scores
  # the ref/hyp text files on their own (as sclite would) and prints its line; its own
  # report goes to a scratch folder, so nothing is written twice
  scratch=$(mktemp -d)
  for split in $(ls "$exp_dir/results"); do
    [[ -f "$exp_dir/results/$split/hyp.txt" ]] || continue
    for unit in $score_units; do
      # shellcheck disable=SC2086  # the options are meant to split
      line=$(recog-score "$exp_dir/results/$split/ref.txt" "$exp_dir/results/$split/hyp.txt" \
        ${unit#*:} --out "$scratch/$split/${unit%%:*}" | tail -n 1)  # a failure stops the run
      echo "$split ${unit%%:*}: $line"
    done
  done
  rm -rf "$scratch"
fi
if run_stage 6; then
  echo "== stage 6: lm"
  recog-decode "${args[@]}" decode=beam
  for method in beam_lm ${beam_extra:-}; do
    # captured, then printed: `tee /dev/stderr` would truncate a log that stderr points to
    out=$(recog-lm "${args[@]}" "decode=$method")
    echo "$out"
    best=$(tail -n 1 <<<"$out")
    [[ $best == decode.* ]] || best=""  # nothing tuned (e.g. isolated_word: a word list)
    # shellcheck disable=SC2086  # the tuned overrides are meant to split
    recog-decode "${args[@]}" "decode=$method" $best
  done
fi
