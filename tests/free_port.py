#!/usr/bin/python3
"""Prints a TCP port on 127.0.0.1 for a test's server, chosen so that nothing else takes it
before the server binds it: below the kernel's ephemeral range (an outgoing connection never
gets it as its local port, which a kernel-picked port could), free now, and reserved for ten
minutes against the other tests running in parallel (a file per port in a shared directory)."""
import os
import random
import socket
import sys
import tempfile
import time

RESERVE_S = 600
RESERVED = os.path.join(tempfile.gettempdir(), "flotilla-test-ports")


def ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def reserve(port):
    """True if this process now holds the port's reservation."""
    path = os.path.join(RESERVED, str(port))
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        os.close(fd)
        return True
    except FileExistsError:
        try:
            if time.time() - os.stat(path).st_mtime < RESERVE_S:
                return False
            os.utime(path)  # stale: take it over (a race here costs one retry at worst)
            return True
        except OSError:
            return False


def bindable(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def main():
    os.makedirs(RESERVED, exist_ok=True)
    low = ephemeral_low()
    lo, hi = (20000, low) if low > 21000 else (low - 1000, low)
    for _ in range(1000):
        port = random.randrange(lo, hi)
        if reserve(port) and bindable(port):
            print(port)
            return 0
    sys.stderr.write("free_port.py: no free port in %d-%d\n" % (lo, hi))
    return 1


if __name__ == "__main__":
    sys.exit(main())
