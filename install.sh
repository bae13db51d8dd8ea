#!/usr/bin/env bash
# Installs lingma-gw from this source tree: the binary (cargo install --locked), the shell
# completions for bash, zsh and fish, and the man pages (lingma-gw.1 and one page per subcommand,
# lingma-gw-serve.1, ...); with --systemd also the service. Idempotent; --uninstall undoes it.
#
#   ./install.sh                 install under ~/.local (binary in ~/.local/bin)
#   ./install.sh --prefix DIR    install under DIR (DIR/bin, DIR/share/...)
#   ./install.sh --uninstall [--prefix DIR] [--systemd[=MODE]]
#   ./install.sh --debug         an unoptimised build (fast; for testing this script)
#   ./install.sh --systemd[=system|user]
#                                also the systemd service (deploy/systemd/): `system` (the default
#                                as root; prefix /usr/local) adds a `lingma-gw` user, the unit in
#                                /etc/systemd/system and /etc/lingma-gw/lingma-gw.env; `user` (the
#                                default otherwise) puts the unit in ~/.config/systemd/user and
#                                the env file in ~/.config/lingma-gw. An existing env file is kept.
#   ./install.sh --destdir DIR   stage everything under DIR (packaging): no user is added and
#                                systemd is not told; paths inside the files stay as without it
set -euo pipefail

prefix=""
uninstall=0
profile=()
systemd=""
destdir=""
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || { echo "install.sh: --prefix needs a directory" >&2; exit 2; }; prefix="$2"; shift 2 ;;
        --prefix=*) prefix="${1#--prefix=}"; shift ;;
        --destdir) [ $# -ge 2 ] || { echo "install.sh: --destdir needs a directory" >&2; exit 2; }; destdir="$2"; shift 2 ;;
        --destdir=*) destdir="${1#--destdir=}"; shift ;;
        --systemd) systemd=auto; shift ;;
        --systemd=system|--systemd=user) systemd="${1#--systemd=}"; shift ;;
        --systemd=*) echo "install.sh: --systemd is system or user, not ${1#--systemd=}" >&2; exit 2 ;;
        --uninstall) uninstall=1; shift ;;
        --debug) profile=(--debug); shift ;;
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ "$systemd" = auto ]; then
    if [ "$(id -u)" = 0 ]; then systemd=system; else systemd=user; fi
fi
if [ -z "$prefix" ]; then
    if [ "$systemd" = system ]; then prefix=/usr/local; else prefix="${HOME}/.local"; fi
fi
case "$prefix" in /*) ;; *) prefix="$(pwd)/$prefix" ;; esac
if [ -n "$destdir" ]; then
    case "$destdir" in /*) ;; *) destdir="$(pwd)/$destdir" ;; esac
fi
if [ "$systemd" = system ] && [ -z "$destdir" ] && [ "$(id -u)" != 0 ]; then
    echo "install.sh: --systemd=system needs root (sudo ./install.sh --systemd), or --destdir" >&2
    exit 2
fi

# Files land under $root; the paths written into them (ExecStart=) are the $prefix ones.
root="$destdir$prefix"
bin="$root/bin/lingma-gw"
bash_dir="$root/share/bash-completion/completions"
zsh_dir="$root/share/zsh/site-functions"
fish_dir="$root/share/fish/vendor_completions.d"
man_dir="$root/share/man/man1"
files=("$bash_dir/lingma-gw" "$zsh_dir/_lingma-gw" "$fish_dir/lingma-gw.fish")

# The man pages this script installed: lingma-gw.1 and lingma-gw-*.1.
man_pages() {
    local f
    for f in "$man_dir"/lingma-gw.1 "$man_dir"/lingma-gw-*.1; do
        if [ -e "$f" ]; then printf '%s\n' "$f"; fi
    done
}

src="$(cd "$(dirname "$0")" && pwd)"
config_home="${XDG_CONFIG_HOME:-${HOME}/.config}"
case "$systemd" in
    system)
        unit_src="$src/deploy/systemd/lingma-gw.service"
        unit="$destdir/etc/systemd/system/lingma-gw.service"
        env_file="$destdir/etc/lingma-gw/lingma-gw.env"
        systemctl=(systemctl)
        ;;
    user)
        unit_src="$src/deploy/systemd/user/lingma-gw.service"
        unit="$destdir$config_home/systemd/user/lingma-gw.service"
        env_file="$destdir$config_home/lingma-gw/lingma-gw.env"
        systemctl=(systemctl --user)
        ;;
esac

# Whether the systemd instance this install is for is running and reachable.
systemd_running() {
    [ -z "$destdir" ] || return 1
    command -v systemctl >/dev/null 2>&1 || return 1
    if [ "$systemd" = system ]; then
        [ -d /run/systemd/system ]
    else
        systemctl --user show-environment >/dev/null 2>&1
    fi
}

if [ "$uninstall" = 1 ]; then
    if [ -n "$systemd" ] && [ -e "$unit" ]; then
        if systemd_running; then
            "${systemctl[@]}" disable --now lingma-gw.service >/dev/null 2>&1 || true
        fi
        rm -f "$unit"
        echo "removed $unit"
        if systemd_running; then "${systemctl[@]}" daemon-reload; fi
        echo "kept $env_file and the work dirs (logins); remove them by hand if you want them gone"
    fi
    mapfile -t pages < <(man_pages)
    for f in "$bin" "${files[@]}" "${pages[@]}"; do
        if [ -e "$f" ]; then rm -f "$f"; echo "removed $f"; fi
    done
    exit 0
fi

command -v cargo >/dev/null || { echo "install.sh: cargo is required (https://rustup.rs)" >&2; exit 1; }
echo "building and installing the binary into $root/bin ..."
cargo install --quiet --locked --force "${profile[@]}" --path "$src" --root "$root" --bin lingma-gw
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

# The man pages: written into a fresh directory, then moved; pages of an older version that the
# new one no longer has are removed, so every page cited resolves and none is stale.
new_pages="$(mktemp -d)"
trap 'rm -rf "$new_pages"' EXIT
"$bin" man --out-dir "$new_pages"
mkdir -p "$man_dir"
mapfile -t old_pages < <(man_pages)
for f in "${old_pages[@]}"; do
    if [ ! -e "$new_pages/$(basename "$f")" ]; then rm -f "$f"; echo "removed $f"; fi
done
for f in "$new_pages"/*.1; do
    mv -f "$f" "$man_dir/$(basename "$f")"
    echo "installed $man_dir/$(basename "$f")"
done

if [ -n "$systemd" ]; then
    # The shipped unit with this install's binary; nothing else changes.
    put "$unit" sed "s#^ExecStart=[^ ]*lingma-gw #ExecStart=$prefix/bin/lingma-gw #" "$unit_src"
    chmod 0644 "$unit"
    if [ -e "$env_file" ]; then
        echo "kept $env_file"
    else
        mkdir -p "$(dirname "$env_file")"
        (umask 077 && cp "$src/deploy/systemd/lingma-gw.env" "$env_file")
        echo "installed $env_file (secrets go here; readable by its owner only)"
    fi
    if [ "$systemd" = system ]; then
        if [ -n "$destdir" ]; then
            echo "note: --destdir: add the service user on the target machine:" \
                 "useradd --system --user-group --home-dir /var/lib/lingma-gw --shell /usr/sbin/nologin lingma-gw"
        elif ! id lingma-gw >/dev/null 2>&1; then
            useradd --system --user-group --home-dir /var/lib/lingma-gw --shell /usr/sbin/nologin lingma-gw
            echo "added the system user lingma-gw"
        fi
    fi
    if systemd_running; then
        "${systemctl[@]}" daemon-reload
        echo "next: set API_KEYS and the Lingma binary in $env_file, then: ${systemctl[*]} enable --now lingma-gw"
    else
        echo "next: set API_KEYS and the Lingma binary in $env_file, then (where systemd runs):" \
             "${systemctl[*]} daemon-reload && ${systemctl[*]} enable --now lingma-gw"
    fi
    if [ "$systemd" = user ]; then
        echo "note: 'loginctl enable-linger ${USER:-$(id -un)}' keeps it running while you are logged out"
    fi
fi

case ":$PATH:" in
    *":$prefix/bin:"*) ;;
    *) echo "note: $prefix/bin is not on your PATH; add it to use lingma-gw directly" ;;
esac
case ":$(manpath 2>/dev/null || true):" in
    *":$prefix/share/man:"*) ;;
    *) echo "note: if 'man lingma-gw' finds nothing, add $prefix/share/man to MANPATH" ;;
esac
echo "done: try 'lingma-gw serve --sim', 'man lingma-gw' and 'man lingma-gw-serve'"
