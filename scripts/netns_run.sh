#!/usr/bin/env bash
# Run a command that may start DDS participants in a private network namespace holding only lo.
#
#   scripts/netns_run.sh CMD [ARGS...]
#
# The command gets the environment of scripts/ros_env.sh (loopback Fast DDS profile,
# ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, ROS_DOMAIN_ID 42 unless set) and runs under
# `unshare --net --mount` (with --user --map-root-user where that is not permitted, as for
# non-root users) with lo up. In the namespace /sys is mounted afresh (the inherited sysfs would
# list the host's interfaces under /sys/class/net) and the interfaces are checked: anything but
# lo aborts the run.
#
# Exit status: the command's; 77 with a one-line reason when a network namespace cannot be made
# here (tests skip on 77; there is no fallback to the host network); 70 when the namespace is
# not as expected; 1 when the workspace is not built.
set -euo pipefail

if (($# == 0)); then
  echo "usage: scripts/netns_run.sh CMD [ARGS...]" >&2
  exit 2
fi
if ! command -v unshare >/dev/null; then
  echo "netns_run: unshare (util-linux) is not installed, so no network namespace" >&2
  exit 77
fi
# As root a network + mount namespace; otherwise inside a user namespace that maps us to root
# (unprivileged user namespaces); else nothing: exit 77, never the host network.
if err=$(unshare --net --mount true 2>&1); then
  NAMESPACES=(--net --mount)
elif unshare --user --map-root-user --net --mount true 2>/dev/null; then
  NAMESPACES=(--user --map-root-user --net --mount)
else
  echo "netns_run: 'unshare --net --mount' is not permitted here (nor with --user):" \
    "${err//$'\n'/ }" >&2
  exit 77
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
set +u
# shellcheck source=scripts/ros_env.sh
source "$ROOT/scripts/ros_env.sh" || exit 1
set -u

# shellcheck disable=SC2016  # expanded by the inner shell
exec unshare "${NAMESPACES[@]}" --propagation private bash -c '
set -euo pipefail
fail() { echo "netns_run: $*; not running the command" >&2; exit 70; }

# A sysfs of this namespace (in this mount namespace only): /sys/class/net then lists our own
# interfaces. Without it nothing is unsafe, but /sys/class/net would show the host.
if mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /sys 2>/dev/null; then
  export RAP_NETNS_SYSFS=1
else
  echo "netns_run: note: cannot mount a fresh /sys; /sys/class/net shows the host" >&2
fi

if command -v ip >/dev/null; then
  ip link set lo up
else  # no iproute2: SIOCGIFFLAGS / SIOCSIFFLAGS with IFF_UP
  python3 -c "
import fcntl, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
req = struct.pack(\"16sH22x\", b\"lo\", 0)
flags = struct.unpack(\"16sH22x\", fcntl.ioctl(s, 0x8913, req))[1]
fcntl.ioctl(s, 0x8914, struct.pack(\"16sH22x\", b\"lo\", flags | 1))
"
fi

# /proc/self/net/dev is per network namespace, whatever /proc or /sys show otherwise.
ifaces=$(awk -F: "NR > 2 { gsub(/ /, \"\", \$1); print \$1 }" /proc/self/net/dev | sort | xargs)
[[ $ifaces == lo ]] || fail "the namespace has interfaces other than lo: $ifaces"
if [[ ${RAP_NETNS_SYSFS:-} == 1 ]]; then
  sys_ifaces=$(ls /sys/class/net | xargs)
  [[ $sys_ifaces == lo ]] || fail "/sys/class/net lists $sys_ifaces"
fi
python3 -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((\"127.0.0.1\", 9))  # a route lookup only; fails while lo is down
" 2>/dev/null || fail "lo is not up (127.0.0.1 unreachable)"

exec "$@"
' netns_run "$@"
