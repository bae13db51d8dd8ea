#!/usr/bin/env bash
# Regenerates what is generated from the clap tree and the settings table: the shell completions
# (completions/), the man pages (man/: lingma-gw.1 and one page per subcommand) and the README's
# configuration table (between its settings-table marker lines).
# tests/generated.rs fails when any of these drift from what the binary prints.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bin lingma-gw
bin="${CARGO_TARGET_DIR:-target}/debug/lingma-gw"
mkdir -p completions man
"$bin" completions bash > completions/lingma-gw.bash
"$bin" completions zsh > completions/_lingma-gw
"$bin" completions fish > completions/lingma-gw.fish
rm -f man/*.1
"$bin" man --out-dir man

# The README table: everything between the two marker lines is replaced (markers included).
table="$("$bin" man --readme-table)"
begin="$(printf '%s\n' "$table" | head -n 1)"
end="$(printf '%s\n' "$table" | tail -n 1)"
grep -qxF "$begin" README.md && grep -qxF "$end" README.md || {
    echo "gen-docs.sh: README.md lacks the lines '$begin' and '$end'" >&2
    exit 1
}
tmp="$(mktemp)"
TABLE="$table" BEGIN="$begin" END="$end" awk '
    $0 == ENVIRON["BEGIN"] { print ENVIRON["TABLE"]; skip = 1; next }
    $0 == ENVIRON["END"] { skip = 0; next }
    !skip { print }
' README.md > "$tmp"
mv "$tmp" README.md
echo "regenerated completions/, man/ and the README's settings table"
