#!/usr/bin/env bash
# Installs every package flotilla needs to build and test, from Debian's archive only.
# Runs apt-get only when something is missing, so a second run costs a second.
set -euo pipefail

packages=(
	# build
	build-essential autoconf automake pkg-config
	libev-dev libmsgpack-dev libhttp-parser-dev libsystemd-dev libcurl4-openssl-dev
	liblua5.4-dev libjansson-dev libssl-dev
	# tests: unit test framework, real etcd and its clients to compare with, load and tools
	libcmocka-dev etcd-server etcd-client python3-etcd python3 curl wrk iproute2 procps
	valgrind
	# runtime drivers' tests: a real dockerd with a local busybox image (no registry), a
	# private systemd --user manager on its own session bus, bc for measured times
	docker.io busybox-static systemd dbus bc
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages: ${missing[*]}; run as root (or with sudo)" >&2
	exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
