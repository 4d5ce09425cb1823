#!/usr/bin/env bash
# Fine-tuning on a new small corpus: recipes/finetune/run.sh [--stage N] [--stop-stage N]
#   [Hydra overrides for the scratch and fine-tuned runs...]
#   0 base      the synthetic TIMIT model: $BASE, else exp/timit/synthetic/best.pt, else a
#               shorter run of the TIMIT recipe into exp/timit/finetune_base/
#   1 prepare   build the shifted corpus (JSONL manifest, FLAC 8 kHz, 39 phones) and read it
#   2 features  feature caches of its splits
#   3 scratch   train the base model's shape from scratch on the small corpus
#   4 finetune  fine-tune the base model on it (61 -> 39 phones)
#   5 decode    decode dev and test with both; transcribe test with the unadapted base model
#   6 score     PER (39 phones) of the three on the test speakers, as a table
set -euo pipefail
recipe_dir=$(cd "$(dirname "$0")" && pwd)
stage=0
stop_stage=6
source "$recipe_dir/../options.sh"
search="hydra.searchpath=[file://$recipe_dir/conf]"
scratch=("$search" "+experiment=scratch" "${overrides[@]}")
tuned=("$search" "+experiment=finetuned" "${overrides[@]}")
exp=exp/finetune
corpus=data/finetune_shifted/corpus

base=${BASE:-exp/timit/synthetic/best.pt}
if [[ -z ${BASE:-} && ! -f $base ]]; then base=exp/timit/finetune_base/best.pt; fi
if run_stage 0 && [[ ! -f $base ]]; then
  echo "== stage 0: base model (synthetic TIMIT, 6 epochs) -> $base"
  bash "$recipe_dir/../timit/run.sh" --stop-stage 3 name=finetune_base trainer.epochs=6
fi

if run_stage 1; then echo "== stage 1: prepare"; recog-prepare "${scratch[@]}"; fi
if run_stage 2; then echo "== stage 2: features"; recog-features "${scratch[@]}"; fi
if run_stage 3; then echo "== stage 3: train from scratch"; recog-train "${scratch[@]}"; fi
if run_stage 4; then
  echo "== stage 4: fine-tune $base"
  recog-finetune "${tuned[@]}" "finetune.checkpoint=$base"
fi
if run_stage 5; then
  echo "== stage 5: decode"
  recog-decode "${scratch[@]}" decode.splits=[dev,test]
  recog-decode "${tuned[@]}" "finetune.checkpoint=$base" decode.splits=[dev,test]
  mkdir -p "$exp/unadapted/results/test"
  recog-transcribe "$base" --kaldi "$corpus"/audio/test/*.flac \
    > "$exp/unadapted/results/test/hyp.txt"
fi
if run_stage 6; then
  echo "== stage 6: score (PER on 39 phones, test speakers of the new corpus)"
  ref=$exp/finetuned/results/test/ref.txt
  printf '%-11s %7s %7s %6s %6s %6s %7s  %s\n' system N Cor S D I "PER %" "95 % CI"
  for system in unadapted scratch finetuned; do
    total=$(recog-score "$ref" "$exp/$system/results/test/hyp.txt" --fold39 \
      --out "$exp/$system/results/test/PER_fold39" | tail -n 1)
    read -r _ n cor s d i per _ _ _ ci <<<"$total"
    printf '%-11s %7s %7s %6s %6s %6s %7s  %s\n' "$system" "$n" "$cor" "$s" "$d" "$i" "$per" \
      "${ci%)}"
  done
fi
