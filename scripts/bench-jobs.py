#!/usr/bin/python3
"""Block-job benchmark for scripts/bench: one daemon implementation at a time.

usage: bench-jobs.py DAEMON WORKDIR
Prints 'name value' lines: seconds for mirror-to-READY (local qcow2, remote NBD on a unix socket
and on TCP, where export-server's nbd node uses multi-conn) and for a full
backup (until the job completes, and until the target is on disk), and the mean / 99th percentile
latency (ms) of 4 KiB writes a client makes through the source's NBD export while the local mirror
runs. The client writes at a fixed pace (one write per millisecond at most), so both
implementations get the same guest writes to mirror; a client writing as fast as it can would hand
the faster daemon more data to copy again. Dirty page cache
is written back before each job so that no job pays for an earlier one's writeback.
"""
import json, os, socket, subprocess, sys, threading, time
import nbd

daemon, work = sys.argv[1], sys.argv[2]


class Qmp:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        for _ in range(500):
            try:
                self.s.connect(path)
                break
            except OSError:
                time.sleep(0.01)
        self.f = self.s.makefile("rw")
        self.events = []
        self.f.readline()
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            msg = json.loads(self.f.readline())
            if "event" in msg:
                self.events.append(msg)
                continue
            if "error" in msg:
                raise RuntimeError(f"{name}: {msg['error']}")
            return msg["return"]

    def wait_event(self, name, timeout=300):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for e in self.events:
                if e["event"] == name:
                    self.events.remove(e)
                    return e
            self.s.settimeout(max(deadline - time.time(), 0.1))
            line = self.f.readline()
            if line:
                self.events.append(json.loads(line))
        raise TimeoutError(name)


def start(tag, *args):
    pid = f"{work}/{tag}.pid"
    if os.path.exists(pid):
        os.unlink(pid)
    qmp = f"{work}/{tag}.qmp"
    p = subprocess.Popen([daemon, *args, "--chardev", f"socket,id=m,path={qmp},server=on,wait=off",
                          "--monitor", "chardev=m", "--pidfile", pid], stderr=subprocess.DEVNULL)
    while not os.path.exists(pid):
        time.sleep(0.01)
    return p, Qmp(qmp)


def image(name, size="1G"):
    path = f"{work}/{name}"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path, size], check=True)
    return path


def writer(uri, stop, lat):
    h = nbd.NBD()
    h.connect_uri(uri)
    buf = b"\x5a" * 4096
    i = 0
    due = time.perf_counter()
    while not stop.is_set():
        t = time.perf_counter()
        if t < due:
            time.sleep(due - t)
            t = time.perf_counter()
        h.pwrite(buf, (i * 1048576 + 4096 * (i % 7)) % (1 << 30))
        lat.append(time.perf_counter() - t)
        due += 0.001
        i += 1
    h.shutdown()


src = f"{work}/jobsrc.qcow2"
if not os.path.exists(src):
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", f"{work}/jobsrc.raw", src], check=True)

base = ["--blockdev", f"driver=file,node-name=sf,filename={src}", "--blockdev", "driver=qcow2,node-name=src,file=sf",
        "--nbd-server", f"addr.type=unix,addr.path={work}/a.sock",
        "--export", "type=nbd,id=e0,node-name=src,name=src,writable=on"]

# Mirror to a local qcow2 while a client writes through the export.
os.sync()
a, q = start("a", *base)
q.cmd("blockdev-add", driver="file", **{"node-name": "tf"}, filename=image("tgt1.qcow2"))
q.cmd("blockdev-add", driver="qcow2", **{"node-name": "tgt"}, file="tf")
stop, lat = threading.Event(), []
w = threading.Thread(target=writer, args=(f"nbd+unix:///src?socket={work}/a.sock", stop, lat))
w.start()
t = time.perf_counter()
q.cmd("blockdev-mirror", **{"job-id": "m"}, device="src", target="tgt", sync="full")
q.wait_event("BLOCK_JOB_READY")
print("mirror-local", round(time.perf_counter() - t, 3))
stop.set()
w.join()
q.cmd("block-job-cancel", device="m")
q.wait_event("BLOCK_JOB_COMPLETED")
lat.sort()
print("write-latency-mean-ms", round(1000 * sum(lat) / max(len(lat), 1), 3))
print("write-latency-p99-ms", round(1000 * lat[int(len(lat) * 0.99)] if lat else 0, 3))

# Full backup to a local qcow2.
q.cmd("blockdev-add", driver="file", **{"node-name": "bf"}, filename=image("tgt2.qcow2"))
q.cmd("blockdev-add", driver="qcow2", **{"node-name": "bk"}, file="bf")
os.sync()
t = time.perf_counter()
q.cmd("blockdev-backup", **{"job-id": "b"}, device="src", target="bk", sync="full")
q.wait_event("BLOCK_JOB_COMPLETED")
print("backup-local", round(time.perf_counter() - t, 3))
# A backup is safe once it is on disk: qemu-storage-daemon 7.2 ends the job without flushing the
# target, so what it left in the page cache is written here and counted.
fd = os.open(f"{work}/tgt2.qcow2", os.O_RDONLY)
os.fdatasync(fd)
os.close(fd)
print("backup-durable", round(time.perf_counter() - t, 3))

# Mirror to a remote NBD export served by a second daemon of the same implementation.
subprocess.run(["qemu-img", "create", "-q", "-f", "raw", f"{work}/remote.raw", "1G"], check=True)
b, qb = start("b", "--blockdev", f"driver=file,node-name=rf,filename={work}/remote.raw",
              "--nbd-server", f"addr.type=unix,addr.path={work}/b.sock",
              "--export", "type=nbd,id=e1,node-name=rf,name=dst,writable=on")
q.cmd("blockdev-add", driver="nbd", **{"node-name": "remote"}, export="dst", server={"type": "unix", "path": f"{work}/b.sock"})
os.sync()
t = time.perf_counter()
q.cmd("blockdev-mirror", **{"job-id": "r"}, device="src", target="remote", sync="full")
q.wait_event("BLOCK_JOB_READY")
print("mirror-remote", round(time.perf_counter() - t, 3))
q.cmd("block-job-cancel", device="r")
q.wait_event("BLOCK_JOB_COMPLETED")
q.cmd("blockdev-del", **{"node-name": "remote"})
b.terminate()
b.wait()

# The same to a remote export on TCP (127.0.0.1): export-server's nbd node opens its default
# multi-conn connections to a server that advertises NBD_FLAG_CAN_MULTI_CONN; QEMU's opens one.
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
c, qc = start("c", "--blockdev", f"driver=file,node-name=rf,filename={work}/remote.raw",
              "--nbd-server", f"addr.type=inet,addr.host=127.0.0.1,addr.port={port}",
              "--export", "type=nbd,id=e1,node-name=rf,name=dst,writable=on")
q.cmd("blockdev-add", driver="nbd", **{"node-name": "tcp"}, export="dst", server={"type": "inet", "host": "127.0.0.1", "port": str(port)})
os.sync()
t = time.perf_counter()
q.cmd("blockdev-mirror", **{"job-id": "t"}, device="src", target="tcp", sync="full")
q.wait_event("BLOCK_JOB_READY")
print("mirror-remote-tcp", round(time.perf_counter() - t, 3))
q.cmd("block-job-cancel", device="t")
q.wait_event("BLOCK_JOB_COMPLETED")
for p in (a, c):
    p.terminate()
    p.wait()
