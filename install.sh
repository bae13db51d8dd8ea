#!/usr/bin/env bash
# Installs lingma-gw from this source tree: the binary (cargo install --locked), the shell
# completions for bash, zsh and fish, and the man page. Idempotent; --uninstall undoes it.
#
#   ./install.sh                 install under ~/.local (binary in ~/.local/bin)
#   ./install.sh --prefix DIR    install under DIR (DIR/bin, DIR/share/...)
#   ./install.sh --uninstall [--prefix DIR]
#   ./install.sh --debug         an unoptimised build (fast; for testing this script)
set -euo pipefail

prefix="${HOME}/.local"
uninstall=0
profile=()
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || { echo "install.sh: --prefix needs a directory" >&2; exit 2; }; prefix="$2"; shift 2 ;;
        --prefix=*) prefix="${1#--prefix=}"; shift ;;
        --uninstall) uninstall=1; shift ;;
        --debug) profile=(--debug); shift ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$prefix" in /*) ;; *) prefix="$(pwd)/$prefix" ;; esac

bin="$prefix/bin/lingma-gw"
bash_dir="$prefix/share/bash-completion/completions"
zsh_dir="$prefix/share/zsh/site-functions"
fish_dir="$prefix/share/fish/vendor_completions.d"
man_dir="$prefix/share/man/man1"
files=("$bash_dir/lingma-gw" "$zsh_dir/_lingma-gw" "$fish_dir/lingma-gw.fish" "$man_dir/lingma-gw.1")

if [ "$uninstall" = 1 ]; then
    for f in "$bin" "${files[@]}"; do
        if [ -e "$f" ]; then rm -f "$f"; echo "removed $f"; fi
    done
    exit 0
fi

src="$(cd "$(dirname "$0")" && pwd)"
command -v cargo >/dev/null || { echo "install.sh: cargo is required (https://rustup.rs)" >&2; exit 1; }
echo "building and installing the binary into $prefix/bin ..."
cargo install --quiet --locked --force "${profile[@]}" --path "$src" --root "$prefix" --bin lingma-gw
echo "installed $bin"

# Write each file to a temporary name and rename it, so a failure never leaves half a file.
put() {
    local dest="$1"; shift
    mkdir -p "$(dirname "$dest")"
    "$@" > "$dest.tmp.$$"
    mv -f "$dest.tmp.$$" "$dest"
    echo "installed $dest"
}
put "$bash_dir/lingma-gw" "$bin" completions bash
put "$zsh_dir/_lingma-gw" "$bin" completions zsh
put "$fish_dir/lingma-gw.fish" "$bin" completions fish
put "$man_dir/lingma-gw.1" "$bin" man

case ":$PATH:" in
    *":$prefix/bin:"*) ;;
    *) echo "note: $prefix/bin is not on your PATH; add it to use lingma-gw directly" ;;
esac
echo "done: try 'lingma-gw serve --sim' and 'man lingma-gw'"
