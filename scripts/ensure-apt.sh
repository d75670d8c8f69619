#!/usr/bin/env bash
# ensure-apt.sh FILE PACKAGE...: make FILE exist by installing Debian PACKAGEs
# (apt-get) when it does not, without starting any service the packages ship
# (redis-server and postgresql start theirs on install; the tests start their own
# on throwaway data directories). Idempotent: does nothing when FILE exists
# (a glob matching at least one file counts). Needs root only to install.
#
# The service start is skipped the way scripts/ensure-prometheus.sh explains:
# invoke-rc.d asks /usr/sbin/policy-rc.d, and exit 101 means "do not start".
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: ensure-apt.sh FILE PACKAGE..." >&2
  exit 2
fi
want=$1
shift

present() {
  compgen -G "$want" >/dev/null
}

if present; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-apt: $want is missing and this is not root; install Debian's $* package(s)" >&2
  exit 1
fi

policy=/usr/sbin/policy-rc.d
backup=""
if [ -e "$policy" ]; then
  backup="$(mktemp)"
  cp -p "$policy" "$backup"
fi
restore_policy() {
  if [ -n "$backup" ]; then
    cp -p "$backup" "$policy"
    rm -f "$backup"
  else
    rm -f "$policy"
  fi
}
trap restore_policy EXIT
printf '#!/bin/sh\n# ensure-apt.sh: no service starts during this install\nexit 101\n' >"$policy"
chmod 0755 "$policy"

echo "ensure-apt: installing $* (for $want)" >&2
export DEBIAN_FRONTEND=noninteractive
# Test files run in parallel and two may install at once (or the machine's own apt
# may be busy): wait for dpkg's lock instead of failing on it.
lock=(-o DPkg::Lock::Timeout=600)
apt-get "${lock[@]}" update -qq
apt-get "${lock[@]}" install -y -qq --no-install-recommends "$@" >/dev/null

if ! present; then
  echo "ensure-apt: installed $* but $want is still missing" >&2
  exit 1
fi
