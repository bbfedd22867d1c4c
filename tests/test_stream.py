"""The bounded stream: the pipe never holds more than its limit, failures on either side stop
both, and a worker's peak memory stays under buffer_mb plus a fixed overhead for a table many
times that size."""
import subprocess
import sys
import threading
import time

import pytest

from so_luigi import stream
from conftest import ROOT


def test_pipe_never_holds_more_than_its_limit():
    pipe = stream.BoundedPipe(10_000)
    got = []

    def consume():
        while True:
            time.sleep(0.001)
            data = pipe.read()
            if not data:
                return
            got.append(data)
    t = threading.Thread(target=consume)
    t.start()
    for i in range(500):
        pipe.put(bytes([i % 256]) * 1000)
    pipe.close()
    t.join()
    assert b"".join(got) == b"".join(bytes([i % 256]) * 1000 for i in range(500))
    assert pipe.peak_bytes <= 10_000


def test_reader_failure_is_raised_as_itself():
    def read(sink):
        sink.write(b"x" * 100)
        raise KeyError("source went away")  # noqa: B023

    def write(pipe):
        while pipe.read():
            pass
    with pytest.raises(KeyError, match="source went away"):
        stream.stream(read, write, 1 << 20)


def test_writer_failure_stops_the_reader():
    produced = []

    def read(sink):
        for _ in range(10_000):
            sink.write(b"y" * 100_000)
            produced.append(1)

    def write(pipe):
        pipe.read()
        raise RuntimeError("COPY failed")
    with pytest.raises(RuntimeError, match="COPY failed"):
        stream.stream(read, write, 1 << 20)
    assert len(produced) < 100      # stopped at once, not after reading everything


def _os_piped(read):
    read.os_pipe = True
    return read


def test_os_pipe_carries_every_byte_in_order():
    pieces = [bytes([i % 256]) * (i % 7000) for i in range(3000)]

    def read(fh):
        for piece in pieces:
            fh.write(piece)
        return len(pieces)

    def write(fh):
        out = []
        while True:
            data = fh.read(1 << 16)
            if not data:
                return b"".join(out)
            out.append(data)
    count, data, nbytes = stream.stream(_os_piped(read), write, 1 << 20)
    assert count == 3000 and data == b"".join(pieces) and nbytes == len(data)


@pytest.mark.parametrize("buffer_bytes", [1 << 30, 1 << 16], ids=["in-memory", "spilled-to-a-file"])
def test_spool_carries_every_byte_in_order_within_its_memory(buffer_bytes):
    pieces = [bytes([i % 256]) * (i % 7000) for i in range(300)]
    spools = []

    def read(fh):
        spools.append(fh)
        for piece in pieces:
            fh.write(piece)
        return len(pieces)

    def write(fh):
        spools.append(fh._rolled)      # past buffer_bytes, the spool is a file on disk
        return fh.read()
    count, data, nbytes = stream.spooled(read, write, buffer_bytes)
    assert count == 300 and data == b"".join(pieces) and nbytes == len(data)
    assert spools[1] == (len(data) > buffer_bytes)


def test_os_pipe_reader_failure_is_raised_even_though_the_copy_saw_a_clean_end():
    """The pipe closes on a reader failure, so COPY FROM may finish short: the reader's error
    must still come out, so the caller's transaction never commits those rows."""
    def read(fh):
        fh.write(b"x" * 100_000)
        raise KeyError("source went away")

    ended = []

    def write(fh):
        while fh.read(1 << 16):
            pass
        ended.append(True)
    with pytest.raises(KeyError, match="source went away"):
        stream.stream(_os_piped(read), write, 1 << 20)
    assert ended == [True]


def test_os_pipe_writer_failure_stops_a_blocked_reader():
    produced = []

    def read(fh):
        for _ in range(10_000):
            fh.write(b"y" * 100_000)       # blocks once the pipe is full
            produced.append(1)

    def write(fh):
        fh.read(1 << 16)
        raise RuntimeError("COPY failed")
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="COPY failed"):
        stream.stream(_os_piped(read), write, 1 << 20)
    assert len(produced) < 100 and time.monotonic() - started < 30


# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across exec, so a child of a big
# pytest process would report pytest's own size
PEAK = """
import sys, luigi, so_luigi
ok = luigi.build([so_luigi.ReplicateAll(buffer_mb=int(sys.argv[1]), chunk_rows=10**7)],
                 local_scheduler=True, workers=1, log_level="WARNING")
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
print("PEAK_KB", hwm, ok)
"""


@pytest.mark.parametrize("buffer_mb", [8, 64])
def test_peak_memory_is_buffer_plus_fixed_overhead_whatever_the_table_size(pair, buffer_mb):
    # one 300 MB partition: far larger than either buffer
    pair.query("source", 'CREATE TABLE "Big" ("Id" int PRIMARY KEY, "Body" text NOT NULL); '
                         "INSERT INTO \"Big\" SELECT g, repeat(md5(g::text), 160) FROM generate_series(1, 60000) g")
    out = subprocess.run([sys.executable, "-c", PEAK, str(buffer_mb)], cwd=ROOT, env=pair.env(),
                         capture_output=True, text=True, timeout=600)
    line = [l for l in out.stdout.splitlines() if l.startswith("PEAK_KB")]
    assert line and line[0].endswith("True"), out.stderr[-3000:]
    peak_mb = int(line[0].split()[1]) / 1024
    moved = pair.query("target", "SELECT sum(bytes) FROM so_luigi.loaded")[0][0] / 2 ** 20
    assert moved > 250
    print(f"buffer {buffer_mb} MB: peak RSS {peak_mb:.0f} MB for {moved:.0f} MB streamed")
    assert peak_mb < buffer_mb + 100
