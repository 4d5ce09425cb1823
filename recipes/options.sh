# The options every recipe takes, sourced by them after setting their defaults
# (stage, stop_stage, experiment): [--stage N] [--stop-stage N] [--experiment NAME]
# [--nproc N] [Hydra overrides...]. Leaves the overrides in `overrides` and defines
# run_stage N (true when N is within --stage..--stop-stage).
while [[ $# -gt 0 ]]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --experiment) experiment=$2; shift 2 ;;
    --nproc) nproc=$2; shift 2 ;;
    *) break ;;
  esac
done
overrides=("$@")
run_stage() { [[ $stage -le $1 && $1 -le $stop_stage ]]; }
trap 'echo "== done in ${SECONDS}s"' EXIT
