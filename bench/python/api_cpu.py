#!/usr/bin/env python3
"""Server CPU per API call for a standard client, for bench-api-cpu. Two modes:

  api_cpu.py grpc SOCKET PID N   N `vmgate.v1.Domain/List` calls with python grpcio over
                                 the UNIX socket SOCKET; PID is the daemon's.
  api_cpu.py libvirt N           libvirtd (its test driver, started here as
                                 libvirt_api.py does) and N listAllDomains calls through
                                 python3-libvirt; run with /usr/bin/python3.

Prints one line: the daemon's CPU (utime + stime from /proc/PID/stat) per call in
microseconds, then the client's wall time per call, separated by a space."""

import os
import sys
import time

TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")


def cpu_us(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat; fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) * TICK_US


def measure(pid, n, call):
    for _ in range(min(n, 200)):
        call()
    before = cpu_us(pid)
    start = time.perf_counter()
    for _ in range(n):
        call()
    wall = time.perf_counter() - start
    print(f"{(cpu_us(pid) - before) / n:.1f} {wall / n * 1e6:.1f}")


def grpc_mode(socket, pid, n):
    import grpc

    # gRPC core sends the socket's percent-encoded path as :authority, which the h2 crate
    # refuses as malformed (RST_STREAM PROTOCOL_ERROR); clients of UNIX-socket gRPC
    # servers built on h2 (tonic's too) name an authority themselves.
    options = [("grpc.default_authority", "localhost")]
    channel = grpc.insecure_channel(f"unix:{socket}", options=options)
    # An empty ListRequest (no filter), sent as raw protobuf bytes: no generated code.
    list_call = channel.unary_unary("/vmgate.v1.Domain/List")
    measure(pid, n, lambda: list_call(b""))


def libvirt_mode(n):
    import shutil
    import signal
    import tempfile

    import libvirt

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from libvirt_api import start_libvirtd

    work = tempfile.mkdtemp(prefix="vmglvcpu")
    proc, uri = start_libvirtd(work)
    try:
        conn = libvirt.open(uri)
        measure(proc.pid, n, lambda: conn.listAllDomains(0))
        conn.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["grpc"] and len(sys.argv) == 5:
        grpc_mode(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[1:2] == ["libvirt"] and len(sys.argv) == 3:
        libvirt_mode(int(sys.argv[2]))
    else:
        sys.exit(__doc__)
