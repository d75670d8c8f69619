#!/usr/bin/env bash
# Make `prometheus` and `promtool` available (Debian's `prometheus` package),
# without leaving a Prometheus server running.
#
# Idempotent: does nothing but print versions when both are already on PATH.
# Needs root (apt-get) only when it has to install.
#
# Why the policy-rc.d dance: the Debian package's maintainer scripts call
# invoke-rc.d (and deb-systemd-invoke) to start prometheus.service right after
# install. Tests only need the binaries, and a server on :9090 would collide with
# anything the tests start. invoke-rc.d asks /usr/sbin/policy-rc.d first and
# skips the start when it exits 101, see
# https://people.debian.org/~hmh/invokerc.d-policyrc.d-specification.txt
# On machines without systemd as PID 1 deb-systemd-invoke does nothing, and on
# machines with it we also stop and disable the unit afterwards.
set -euo pipefail

have_both() {
  command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1
}

print_versions() {
  prometheus --version 2>&1 | head -n 1
  promtool --version 2>&1 | head -n 1
}

if have_both; then
  print_versions
  exit 0
fi

# Installed without starting its service (ensure-apt.sh says how).
# --no-install-recommends there: the Recommends (node exporter and friends) are
# daemons too, and nothing here needs them.
bash "$(dirname "$0")/ensure-apt.sh" /usr/bin/promtool prometheus

# Belt and braces: if some init system did start it anyway, stop it and keep it
# from coming back at boot.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl stop prometheus.service >/dev/null 2>&1 || true
  systemctl disable prometheus.service >/dev/null 2>&1 || true
elif [ -x /etc/init.d/prometheus ]; then
  /etc/init.d/prometheus stop >/dev/null 2>&1 || true
fi

if ! have_both; then
  echo "ensure-prometheus: installed the 'prometheus' package but prometheus/promtool are still not on PATH" >&2
  exit 1
fi

# The install must not leave a server behind: nothing may listen on :9090.
if command -v ss >/dev/null 2>&1; then
  if ss -Hltn 'sport = :9090' | grep -q .; then
    echo "ensure-prometheus: something is listening on :9090 after the install:" >&2
    ss -ltnp 'sport = :9090' >&2 || true
    exit 1
  fi
fi

print_versions
