#!/usr/bin/env bash
# TIMIT-style phoneme recognition: recipes/timit/run.sh [--stage N] [--stop-stage N]
#   [--experiment synthetic|graves2013_ctc] [Hydra overrides...]  (stages: ../stages.sh)
#   e.g. recipes/timit/run.sh --experiment graves2013_ctc corpus.root=/data/TIMIT
recipe_dir=$(cd "$(dirname "$0")" && pwd)
experiment=synthetic
score_units="PER:"  # ref/hyp hold 39-folded phones
source "$recipe_dir/../stages.sh"
