#!/usr/bin/env bash
# Regenerates the committed shell completions and man page from the clap tree.
# tests/generated.rs fails when these files drift from what the binary prints.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bin lingma-gw
bin=target/debug/lingma-gw
mkdir -p completions man
"$bin" completions bash > completions/lingma-gw.bash
"$bin" completions zsh > completions/_lingma-gw
"$bin" completions fish > completions/lingma-gw.fish
"$bin" man > man/lingma-gw.1
echo "regenerated completions/ and man/"
