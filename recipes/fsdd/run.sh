#!/usr/bin/env bash
# Spoken digits, real 8 kHz recordings (FSDD): recipes/fsdd/run.sh corpus.root=DIR
#   [--stage N] [--stop-stage N] [--experiment blstm|finetune_timit] [--nproc N|auto]
#   [Hydra overrides...]
#   e.g. recipes/fsdd/run.sh corpus.root=../shared/data/fsdd
#        recipes/fsdd/run.sh --experiment finetune_timit corpus.root=../shared/data/fsdd \
#            finetune.checkpoint=exp/timit/synthetic/best.pt
# Stages as ../stages.sh; stage 6 ends with isolated-word decoding (one digit word per
# recording), whose last lines are "<split> CER x.xx %" and "<split> WER x.xx %".
recipe_dir=$(cd "$(dirname "$0")" && pwd)
experiment=blstm
# two training processes on two cores (torchrun, one torch thread each): the same updates,
# 7 epochs within trainer.max_minutes instead of 4 (RESULTS.md, session 13); --nproc 1: one
nproc=auto
score_units="CER:--cer WER:"  # ref/hyp hold the words
beam_extra="beam_lexicon isolated_word"  # free word sequence, then exactly one word
source "$recipe_dir/../stages.sh"
