"""A process that appends large records to an audit log until it is killed (the kill -9 test).

    python tests/helpers/audit_writer.py LOG BYTES [CHUNK]

Opens LOG with `AuditLog` (which recovers a torn tail left by the previous kill), prints
"open <records>" and appends records of about BYTES bytes forever. With CHUNK, every write()
puts at most CHUNK bytes and yields the processor: a kernel may legally cut a write short
(`AuditLog` loops until all bytes are written), and small writes stretch the window in which
a kill lands in the middle of a record, so the test sees torn tails on most kills instead of
rarely.
"""

from __future__ import annotations

import os
import sys
import time

from flwr_trust.report.audit import AuditLog


def main() -> None:
    path, size = sys.argv[1], int(sys.argv[2])
    chunk = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    blob = "x" * size
    with AuditLog(path) as log:
        if chunk:
            def short_writes(data: bytes) -> None:
                view = memoryview(data)
                while view:
                    view = view[os.write(log._file.fileno(), view[:chunk]):]
                    time.sleep(0.0002)
            log._write_all = short_writes  # type: ignore[method-assign]
        print("open", log.records, flush=True)
        n = 0
        while True:
            log.append("round", {"n": n, "blob": blob})
            n += 1


if __name__ == "__main__":
    main()
