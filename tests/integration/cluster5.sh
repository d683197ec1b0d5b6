#!/usr/bin/env bash
# The cluster test with five members: the same checks as cluster3.sh (writes through leader and
# follower, etcdctl member list and cluster-health, kill -9 failover under 3 s with no
# acknowledged write lost, catch-up through a snapshot, leadership handoff on SIGTERM).
CLUSTER_SIZE=5 exec bash "$(dirname "$0")/cluster3.sh"
