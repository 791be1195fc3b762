#!/usr/bin/env bash
# Regenerates fuzz/seeds/<target>/ (the committed seed corpora) from the
# repository's fixtures and the crates' own encoders: see examples/seeds.rs.
# Usage: fuzz/seed.sh   (nightly toolchain; builds without sanitizers)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/fuzz/target}"
rm -rf "$repo/fuzz/seeds"
cargo +nightly run --quiet --manifest-path "$repo/fuzz/Cargo.toml" --example seeds -- "$repo"
for d in "$repo"/fuzz/seeds/*/; do
    printf '%-16s %3d seeds\n' "$(basename "$d")" "$(ls "$d" | wc -l)"
done
