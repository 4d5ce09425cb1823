#!/usr/bin/env bash
# IAM-OnDB-style online handwriting recognition: recipes/iam_ondb/run.sh [--stage N]
#   [--stop-stage N] [--experiment synthetic_inkaug|synthetic|synthetic_bezier|graves2009_blstm|
#   carbune2020]
#   [Hydra overrides...]
#   e.g. recipes/iam_ondb/run.sh --experiment graves2009_blstm corpus.root=/data/IAM-OnDB
recipe_dir=$(cd "$(dirname "$0")" && pwd)
experiment=synthetic_inkaug  # the best synthetic model on val1 (RESULTS.md)
score_units="CER:--cer WER:"  # ref/hyp hold the text lines
beam_extra="beam_lexicon"  # stage 6 also decodes with the lexicon of the training words
source "$recipe_dir/../stages.sh"
