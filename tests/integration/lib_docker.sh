# Shared helpers for tests that need a docker daemon: start a private dockerd (never the system's)
# on a unix socket in a temporary directory, wait for it with a deadline, import the local image
# "flotilla-busybox:latest" built from Debian's busybox-static (no registry is ever needed), and
# stop and clean up everything it started. Source it after lib.sh (it uses fail, note, T_TMP).
#
#   docker_setup             -> exports FLT_DOCKER_HOST (unix:///...), FLT_DOCKER_PREFIX, DOCKER_HOST
#   dk ARGS...               -> the docker CLI against that daemon
#   docker_cleanup           -> containers named $FLT_DOCKER_PREFIX*, then the daemon if ours
#
# If FLT_DOCKER_HOST names a daemon that answers already (e.g. started by a calling script), it is
# reused and left running. A dockerd that cannot start fails the test with its reason: nothing is
# skipped silently.
#
# FLT_DOCKERD_ARGS, if set, is extra dockerd arguments (split on blanks) for the dockerd started
# here, e.g. "--registry-mirror http://127.0.0.1:PORT -H unix:///var/run/docker.sock"; unset or
# empty, the dockerd is started exactly as before.

DK_ROOT=
DK_PID=
DK_OWNED=0
FLT_DOCKER_IMAGE=flotilla-busybox:latest

dk() {
	docker -H "$FLT_DOCKER_HOST" "$@"
}

# Remove our containers, stop our dockerd (TERM, then KILL after a deadline), unmount what it left
# and remove its directory. Safe to call twice.
docker_cleanup() {
	local ids end m
	if [ -n "${FLT_DOCKER_HOST:-}" ] && [ -n "${FLT_DOCKER_PREFIX:-}" ]; then
		ids=$(dk ps -aq --filter "name=^/${FLT_DOCKER_PREFIX}" 2>/dev/null || true)
		[ -z "$ids" ] || dk rm -f -v $ids >/dev/null 2>&1 || true
	fi
	if [ "$DK_OWNED" = 1 ] && [ -n "$DK_PID" ]; then
		kill -TERM "$DK_PID" 2>/dev/null || true
		end=$((SECONDS + 20))
		while kill -0 "$DK_PID" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.05; done
		kill -KILL "$DK_PID" 2>/dev/null || true
		wait "$DK_PID" 2>/dev/null || true
		# dockerd's containerd, if dockerd died without taking it along
		if [ -f "$DK_ROOT/exec/containerd/containerd.pid" ]; then
			kill -KILL "$(cat "$DK_ROOT/exec/containerd/containerd.pid")" 2>/dev/null || true
		fi
		DK_PID=
	fi
	if [ "$DK_OWNED" = 1 ] && [ -n "$DK_ROOT" ] && [ -d "$DK_ROOT" ]; then
		# deepest first: overlay mounts, netns, the data root's own bind mount
		for m in $(awk -v r="$DK_ROOT" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r); do
			umount -l "$m" 2>/dev/null || true
		done
		rm -rf "$DK_ROOT"
		DK_ROOT=
	fi
	DK_OWNED=0
}

# The image: busybox-static's one binary and a symlink per applet, imported as a tar.
docker_import_image() {
	local dir=$DK_ROOT/image a
	dk image inspect "$FLT_DOCKER_IMAGE" >/dev/null 2>&1 && return 0
	[ -x /bin/busybox ] || fail "no /bin/busybox: install the Debian package busybox-static"
	mkdir -p "$dir/rootfs/bin" "$dir/rootfs/tmp" || fail "cannot create $dir"
	cp /bin/busybox "$dir/rootfs/bin/busybox" || fail "cannot copy /bin/busybox"
	for a in $(/bin/busybox --list); do
		[ "$a" = busybox ] || ln -sf busybox "$dir/rootfs/bin/$a"
	done
	tar -C "$dir/rootfs" -cf "$dir/rootfs.tar" . || fail "cannot build the busybox image tar"
	dk import --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' "$dir/rootfs.tar" \
		"$FLT_DOCKER_IMAGE" >/dev/null || fail "docker import of $FLT_DOCKER_IMAGE failed"
}

docker_setup() {
	local end
	FLT_DOCKER_PREFIX=${FLT_DOCKER_PREFIX:-flttest-$$-}
	export FLT_DOCKER_PREFIX
	command -v docker >/dev/null || fail "no docker CLI: install the Debian package docker.io"
	if [ -n "${FLT_DOCKER_HOST:-}" ] && docker -H "$FLT_DOCKER_HOST" version >/dev/null 2>&1; then
		note "reusing dockerd at $FLT_DOCKER_HOST"
	else
		command -v dockerd >/dev/null || fail "no dockerd: install the Debian package docker.io"
		# Short path: the socket path must fit sun_path (108 bytes).
		DK_ROOT=$(mktemp -d /tmp/flt-dk.XXXXXX) || fail "mktemp failed"
		DK_OWNED=1
		FLT_DOCKER_HOST=unix://$DK_ROOT/docker.sock
		# shellcheck disable=SC2086 # FLT_DOCKERD_ARGS is a list of arguments
		dockerd --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
			--data-root "$DK_ROOT/data" --exec-root "$DK_ROOT/exec" \
			--pidfile "$DK_ROOT/docker.pid" -H "$FLT_DOCKER_HOST" ${FLT_DOCKERD_ARGS:-} \
			>"$DK_ROOT/dockerd.log" 2>&1 &
		DK_PID=$!
		end=$((SECONDS + 60))
		until docker -H "$FLT_DOCKER_HOST" version >/dev/null 2>&1; do
			if ! kill -0 "$DK_PID" 2>/dev/null; then
				tail -20 "$DK_ROOT/dockerd.log" >&2
				fail "dockerd exited during start-up (its log above)"
			fi
			if [ $SECONDS -ge $end ]; then
				tail -20 "$DK_ROOT/dockerd.log" >&2
				fail "dockerd did not answer on $FLT_DOCKER_HOST within 60 s (its log above)"
			fi
			sleep 0.1
		done
		note "dockerd $DK_PID on $FLT_DOCKER_HOST"
	fi
	export FLT_DOCKER_HOST DOCKER_HOST=$FLT_DOCKER_HOST
	if [ -z "$DK_ROOT" ]; then
		DK_ROOT=$(mktemp -d /tmp/flt-dkimg.XXXXXX) || fail "mktemp failed"
		docker_import_image
		rm -rf "$DK_ROOT"
		DK_ROOT=
	else
		docker_import_image
	fi
}
