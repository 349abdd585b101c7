#!/usr/bin/python3
"""Peer figures for bench-api: libvirtd 9 with its test driver, started by hand on a
private directory (as TESTING.md describes), measured through python3-libvirt with the
same calls vmgate's benchmark makes: listAllDomains and a domain's info(), on one
connection and on four (four processes), with 1, 100 and 10,000 defined domains; then
virsh's shell running 2,000 `list --all`. Prints Markdown table rows."""

import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import libvirt

BUDGET = 2.0
SIZES = [1, 100, 10_000]
SCRIPT_LINES = 2000

DOMAIN_XML = """<domain type='test'><name>{name}</name><memory>131072</memory>
<vcpu>1</vcpu><os><type>hvm</type></os></domain>"""


def start_libvirtd(work):
    conf = os.path.join(work, "libvirtd.conf")
    sock_dir = os.path.join(work, "run")
    os.makedirs(sock_dir)
    drivers = os.path.join(work, "drivers")
    os.makedirs(drivers)
    with open(conf, "w") as f:
        f.write(f'unix_sock_dir = "{sock_dir}"\nauth_unix_rw = "none"\nauth_unix_ro = "none"\n'
                'listen_tls = 0\nlisten_tcp = 0\nmax_client_requests = 64\n')
    env = dict(os.environ, LIBVIRT_DRIVER_DIR=drivers)
    proc = subprocess.Popen(["libvirtd", "-f", conf], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    sock = os.path.join(sock_dir, "libvirt-sock")
    deadline = time.time() + 20
    while not os.path.exists(sock):
        if time.time() > deadline or proc.poll() is not None:
            raise SystemExit("libvirtd did not start")
        time.sleep(0.02)
    return proc, f"test+unix:///default?socket={sock}"


def worker(uri, call, out):
    conn = libvirt.open(uri)
    dom = conn.lookupByName("test")
    fn = (lambda: conn.listAllDomains(0)) if call == "list" else (lambda: dom.info())
    lat = []
    start = time.perf_counter()
    while time.perf_counter() - start < BUDGET or len(lat) < 20:
        t = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t)
    out.put(lat)


def measure(uri, call, conns):
    q = mp.Queue()
    procs = [mp.Process(target=worker, args=(uri, call, q)) for _ in range(conns)]
    start = time.perf_counter()
    for p in procs:
        p.start()
    lat = []
    for _ in procs:
        lat.extend(q.get())
    for p in procs:
        p.join()
    wall = time.perf_counter() - start
    lat.sort()
    q50 = lat[round((len(lat) - 1) * 0.5)] * 1000
    q99 = lat[round((len(lat) - 1) * 0.99)] * 1000
    return f"{len(lat) / wall:.0f} | {q50:.3f} | {q99:.3f}"


def main():
    if shutil.which("libvirtd") is None:
        sys.exit("libvirtd not installed")
    work = tempfile.mkdtemp(prefix="lvb")
    proc, uri = start_libvirtd(work)
    try:
        conn = libvirt.open(uri)
        version = conn.getLibVersion()
        label = f"libvirtd {version // 1000000}.{version // 1000 % 1000}"
        defined = len(conn.listAllDomains(0))
        for size in SIZES:
            while defined < size:
                conn.defineXML(DOMAIN_XML.format(name=f"bench{defined:05}"))
                defined += 1
            for conns in (1, 4):
                print(f"| {label} | {size} | list --all | {conns} | {measure(uri, 'list', conns)} |")
                print(f"| {label} | {size} | dominfo | {conns} | {measure(uri, 'info', conns)} |")
        conn.close()
        # virsh's shell with the default single domain: a fresh libvirtd.
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
    work2 = tempfile.mkdtemp(prefix="lvb")
    proc, uri = start_libvirtd(work2)
    try:
        script = "list --all\n" * SCRIPT_LINES
        start = time.perf_counter()
        subprocess.run(["virsh", "-c", uri], input=script.encode(), stdout=subprocess.DEVNULL,
                       check=True)
        took = time.perf_counter() - start
        print(f"\nvirsh stdin mode, {SCRIPT_LINES} x `list --all`: {took:.3f} s")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(work2, ignore_errors=True)


if __name__ == "__main__":
    main()
