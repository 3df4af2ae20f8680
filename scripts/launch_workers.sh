#!/usr/bin/env bash
# Start N hpo workers on this machine, all joining one study in one storage, and wait for them.
#
#   HPO_STORAGE='postgresql+psycopg2://USER:PASSWORD@HOST/DB' \
#       scripts/launch_workers.sh N STUDY_FILE [study options ...]
#
# Each worker is `python -m hpo.run study STUDY_FILE [options]` in its own process with
# (cores / N) CPU threads, its own sampler seed (SEED + worker index, when SEED is set) and its
# own log file LOG_DIR/worker-<i>.log (default LOG_DIR: ./hpo-logs).  The storage URL is read
# from HPO_STORAGE so that its password is on no command line.  Exit status: 0 when every
# worker succeeded, else 1.  SIGINT/SIGTERM are passed on to the workers.
#
# Environment: HPO_STORAGE (required), PYTHON (default python3), SEED, LOG_DIR, THREADS.
set -u

if [ "$#" -lt 2 ]; then
    echo "usage: HPO_STORAGE=URL $0 N STUDY_FILE [study options ...]" >&2
    exit 2
fi
n="$1"
shift
case "$n" in
'' | *[!0-9]* | 0)
    echo "$0: N must be a whole number >= 1, but got '$n'" >&2
    exit 2
    ;;
esac
if [ -z "${HPO_STORAGE:-}" ]; then
    echo "$0: set HPO_STORAGE to the storage URL every worker shares" >&2
    exit 2
fi
python="${PYTHON:-python3}"
log_dir="${LOG_DIR:-hpo-logs}"
cores="$(nproc)"
threads="${THREADS:-$(((cores / n) > 0 ? cores / n : 1))}"
mkdir -p "$log_dir"

pids=()
stop() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
}
trap stop INT TERM

for ((i = 0; i < n; i++)); do
    seed=()
    if [ -n "${SEED:-}" ]; then seed=(--seed "$((SEED + i))"); fi
    OMP_NUM_THREADS="$threads" "$python" -m hpo.run study "$@" --no-progress --threads "$threads" "${seed[@]}" \
        >"$log_dir/worker-$i.log" 2>&1 &
    pids+=("$!")
done
echo "started $n workers ($threads CPU threads each), logs in $log_dir/worker-*.log"

status=0
for i in "${!pids[@]}"; do
    while true; do
        wait "${pids[$i]}"
        code=$?
        # a trapped signal interrupts `wait` (code > 128) while the worker still shuts down
        if [ "$code" -gt 128 ] && kill -0 "${pids[$i]}" 2>/dev/null; then continue; fi
        break
    done
    if [ "$code" -ne 0 ]; then
        echo "worker $i exited with code $code (see $log_dir/worker-$i.log)" >&2
        status=1
    fi
done
exit "$status"
