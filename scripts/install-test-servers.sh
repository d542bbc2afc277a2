#!/usr/bin/env bash
# Install the servers that chanmux's tests start on loopback: the IRC servers
# (chanmux_testservers.irc: ngircd, InspIRCd 3, Anope 2 services, openssl),
# PostgreSQL (core's storage tests run their own server in a temporary folder) and
# iproute2 (`ss`: e2e tests see a request waiting on a stopped bridge's socket).
# Debian/Ubuntu only, run as root (CI runs as root). Idempotent: packages
# already installed are left alone and `apt-get update` only runs when
# something has to be installed.
#
# The tests start their own server processes on free 127.0.0.1 ports with
# generated configs; the distribution's own service instances are not used,
# so this script keeps them from starting (and disables them).
set -euo pipefail

PACKAGES=(ngircd inspircd anope openssl postgresql iproute2)
# Files the harness needs from those packages (checked after installing).
REQUIRED_FILES=(
    /usr/sbin/ngircd
    /usr/sbin/inspircd
    /usr/lib/inspircd/modules/m_ssl_gnutls.so
    /usr/lib/inspircd/modules/m_sasl.so
    /usr/lib/inspircd/modules/m_spanningtree.so
    /usr/lib/inspircd/modules/m_ircv3.so
    /usr/sbin/anope
    /usr/lib/anope/modules/inspircd3.so
    /usr/lib/anope/modules/m_sasl.so
    /usr/bin/openssl
    /usr/sbin/runuser
    /bin/ss
)
SERVICES=(ngircd inspircd anope postgresql)

say() { echo "install-test-servers: $*"; }
fail() { echo "install-test-servers: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "must run as root (it installs Debian packages with apt-get)"
command -v apt-get >/dev/null 2>&1 || fail "apt-get not found: this script supports Debian/Ubuntu only"
command -v dpkg >/dev/null 2>&1 || fail "dpkg not found"

is_installed() {
    dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed$'
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    if is_installed "$pkg"; then
        say "$pkg already installed ($(dpkg-query -W -f='${Version}' "$pkg"))"
    else
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    # Keep maintainer scripts from starting the daemons (they would listen on
    # 6667 etc.); only when no policy is in place already.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# temporary, from chanmux install-test-servers.sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    LOG="$(mktemp -t install-test-servers.XXXXXX.log)"
    say "installing: ${missing[*]}"
    say "running apt-get update"
    if ! apt-get update >"$LOG" 2>&1; then
        tail -n 30 "$LOG" >&2
        fail "apt-get update failed (full log: $LOG)"
    fi
    # --no-install-recommends: Anope recommends a mail server, which the tests don't use.
    if ! apt-get install -y --no-install-recommends "${missing[@]}" >>"$LOG" 2>&1; then
        tail -n 30 "$LOG" >&2
        fail "apt-get install ${missing[*]} failed (full log: $LOG)"
    fi
    for pkg in "${missing[@]}"; do
        is_installed "$pkg" || fail "$pkg is still not installed after apt-get install (log: $LOG)"
        say "installed $pkg ($(dpkg-query -W -f='${Version}' "$pkg"))"
    done
    rm -f "$LOG"
else
    say "all packages present; nothing to install"
fi

for f in "${REQUIRED_FILES[@]}"; do
    [ -e "$f" ] || fail "$f is missing although its package is installed"
done

# Make sure the distribution's own instances are neither running nor enabled.
# Only the instance recorded in the service's pid file is stopped, never other
# processes of the same name (the test harness runs its own).
pidfile_of() {
    case "$1" in
        ngircd) echo /run/ngircd/ngircd.pid ;;
        inspircd) echo /run/inspircd/inspircd.pid ;;
        anope) echo /run/anope/anope.pid ;;
    esac
}
systemd_running=no
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemd_running=yes
fi
for svc in "${SERVICES[@]}"; do
    if [ "$systemd_running" = yes ]; then
        if systemctl is-active --quiet "$svc" 2>/dev/null; then
            systemctl stop "$svc" && say "stopped the distribution's $svc service"
        fi
    else
        pidfile="$(pidfile_of "$svc")"
        if [ -f "$pidfile" ]; then
            pid="$(tr -dc '0-9' <"$pidfile")"
            if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
                kill -TERM "$pid" && say "stopped the distribution's $svc (pid $pid from $pidfile)"
            fi
        fi
    fi
    if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled --quiet "$svc" 2>/dev/null; then
        systemctl disable --quiet "$svc" >/dev/null 2>&1 && say "disabled the $svc systemd unit"
    fi
    if [ -x "/etc/init.d/$svc" ] && command -v update-rc.d >/dev/null 2>&1 \
        && ls /etc/rc[2-5].d/S*"$svc" >/dev/null 2>&1; then
        update-rc.d "$svc" disable >/dev/null 2>&1 && say "disabled the $svc init script"
    fi
done

say "ready: ngircd $(dpkg-query -W -f='${Version}' ngircd), inspircd $(dpkg-query -W -f='${Version}' inspircd)," \
    "anope $(dpkg-query -W -f='${Version}' anope), $(openssl version | cut -d' ' -f1-2)"
