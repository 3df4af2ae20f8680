#!/usr/bin/env bash
# The README's quickstart in one command, as root (no sudo needed) or as a user with sudo:
# installs Debian's dataset-fashion-mnist and python3-venv when missing, creates .venv,
# pip install -e '.[dev]', then runs the main job (studies/fashion_dense.toml).
#
#   scripts/setup.sh                      # set up, then the main job
#   scripts/setup.sh quickstart           # set up, then another study: hpo study ARGS ...
#   scripts/setup.sh --no-run             # set up only
#   scripts/setup.sh --dry-run [...]      # print what it would run, run nothing
set -euo pipefail
cd "$(dirname "$0")/.."

DRY=0
RUN=1
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1; shift ;;
    --no-run) RUN=0; shift ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || set -- studies/fashion_dense.toml

run() {
  if [ "$DRY" -eq 1 ]; then printf '+ %s\n' "$*"; else "$@"; fi
}

SUDO=()
[ "$(id -u)" -eq 0 ] || SUDO=(sudo)  # root (a fresh Debian has no sudo) runs apt-get itself

# --- system packages (Debian/Ubuntu) -------------------------------------------------------------
need=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
PY=python3
command -v python3.11 >/dev/null 2>&1 && PY=python3.11
[ -x .venv/bin/python ] || "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  if [ ${#SUDO[@]} -gt 0 ] && ! command -v sudo >/dev/null 2>&1; then
    echo "setup.sh: needs ${need[*]} (apt-get install), but sudo is not installed: run it as root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  run "${SUDO[@]}" apt-get update -q
  run "${SUDO[@]}" apt-get install -y -q "${need[@]}"
fi

# --- Python environment ---------------------------------------------------------------------------
[ -x .venv/bin/python ] || run "$PY" -m venv .venv
run .venv/bin/python -m pip install -q -e '.[dev]'

# --- the main job (or the study given) ------------------------------------------------------------
if [ "$RUN" -eq 1 ]; then
  run .venv/bin/python -m hpo.run study "$@"
fi
