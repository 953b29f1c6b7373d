# Sourced by the scripts: one cargo target directory that survives between CI runs on
# the same machine (a fresh machine simply starts empty).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vigil-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
