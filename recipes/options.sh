# The options every recipe takes, sourced by them after setting their defaults
# (stage, stop_stage, experiment): [--stage N] [--stop-stage N] [--experiment NAME]
# [--nproc N] [Hydra overrides...]. Leaves the overrides in `overrides` and defines
# run_stage N (true when N is within --stage..--stop-stage). A stage outside the recipe's
# (its defaults are its first and last), a range that runs nothing, or an option the
# recipes do not take is an error (exit 2) before anything runs.
first_stage=$stage last_stage=$stop_stage
options_error() { echo "error: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --stage|--stop-stage|--experiment|--nproc)
      [[ $# -ge 2 ]] || options_error "$1 needs a value"
      case "$1" in
        --stage) stage=$2 ;;
        --stop-stage) stop_stage=$2 ;;
        --experiment) experiment=$2 ;;
        --nproc) nproc=$2 ;;
      esac
      shift 2 ;;
    --*) options_error "unknown option $1 (the recipes take --stage N, --stop-stage N," \
           "--experiment NAME, --nproc N|auto, then Hydra overrides key=value)" ;;
    *) break ;;
  esac
done
for name in stage stop_stage; do
  value=${!name}
  if ! [[ $value =~ ^[0-9]+$ ]] || (( value < first_stage || value > last_stage )); then
    options_error "--${name/_/-} $value: this recipe's stages are $first_stage to $last_stage"
  fi
done
(( stage <= stop_stage )) || options_error "--stage $stage comes after --stop-stage $stop_stage"
overrides=("$@")
run_stage() { [[ $stage -le $1 && $1 -le $stop_stage ]]; }
trap 'echo "== done in ${SECONDS}s"' EXIT
