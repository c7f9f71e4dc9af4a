"""pyeclib as the oracle for apus-ec's compatibility test.

Usage: pyeclib_oracle.py JOBS_FILE WORK_DIR

JOBS_FILE has one case per line, fields separated by spaces:

    name ec_type k m segment_size checksum legacy_crc subsets

checksum is pyeclib's chksum_type ("none" or "inline_crc32"), legacy_crc
is 1 to make liberasurecode write its legacy CRC variant, and subsets is
a ';'-separated list of ','-separated fragment indexes (order kept).

For each case, WORK_DIR/name/ holds object.bin and the apus fragment
archives apus_<i>.bin. The script writes pyeclib's archives py_<i>.bin
(each segment encoded separately, the fragments of one index
concatenated, as Swift's proxy does) and, for every subset s and every
index i outside it, pyeclib's reconstruction of archive i from that subset
as rec_<s>_<i>.bin. It decodes apus's archives from every subset and
prints one line per case: "name ok" or "name FAIL reason".
"""

import os
import sys

from pyeclib.ec_iface import ECDriver


def segments(data, segment_size):
    # An empty object is one empty segment, so encoding no data is compared
    # too (Swift itself stores empty archives for an empty object).
    if not data:
        return [data]
    return [data[i:i + segment_size] for i in range(0, len(data), segment_size)]


def split_like(archive, sizes):
    """Split an archive into pieces of the given sizes."""
    pieces, offset = [], 0
    for size in sizes:
        pieces.append(archive[offset:offset + size])
        offset += size
    if offset != len(archive):
        raise ValueError("archive is %d bytes, expected %d" % (len(archive), offset))
    return pieces


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def run_case(drivers, work_dir, fields):
    name, ec_type, k, m, segment_size, checksum, legacy, subsets = fields
    k, m, segment_size = int(k), int(m), int(segment_size)
    n = k + m
    subsets = [[int(i) for i in s.split(",")] for s in subsets.split(";")]
    key = (ec_type, k, m, checksum)
    if key not in drivers:
        drivers[key] = ECDriver(k=k, m=m, ec_type=ec_type, chksum_type=checksum)
    driver = drivers[key]
    case_dir = os.path.join(work_dir, name)
    obj = read(os.path.join(case_dir, "object.bin"))

    if legacy == "1":
        os.environ["LIBERASURECODE_WRITE_LEGACY_CRC"] = "1"
    try:
        by_segment = [driver.encode(seg) for seg in segments(obj, segment_size)]
    finally:
        os.environ.pop("LIBERASURECODE_WRITE_LEGACY_CRC", None)
    for i in range(n):
        write(os.path.join(case_dir, "py_%d.bin" % i),
              b"".join(frags[i] for frags in by_segment))

    for s, subset in enumerate(subsets):
        for target in range(n):
            if target in subset:
                continue
            rebuilt = []
            for frags in by_segment:
                rebuilt.append(driver.reconstruct([frags[i] for i in subset], [target])[0])
            write(os.path.join(case_dir, "rec_%d_%d.bin" % (s, target)), b"".join(rebuilt))

    # Decode apus's archives, split at pyeclib's own fragment sizes.
    sizes = [[len(frags[i]) for frags in by_segment] for i in range(n)]
    apus = []
    for i in range(n):
        try:
            apus.append(split_like(read(os.path.join(case_dir, "apus_%d.bin" % i)), sizes[i]))
        except ValueError as e:
            return "FAIL apus archive %d: %s" % (i, e)
    for subset in subsets:
        decoded = []
        for seg in range(len(by_segment)):
            try:
                decoded.append(driver.decode([apus[i][seg] for i in subset]))
            except Exception as e:  # any pyeclib error fails the case
                return "FAIL decoding apus subset %s segment %d: %r" % (subset, seg, e)
        if b"".join(decoded) != obj:
            return "FAIL pyeclib decoded apus subset %s to different bytes" % (subset,)
    return "ok"


def main():
    jobs_file, work_dir = sys.argv[1], sys.argv[2]
    drivers = {}
    with open(jobs_file) as jobs:
        for line in jobs:
            fields = line.split()
            if not fields:
                continue
            print(fields[0], run_case(drivers, work_dir, fields), flush=True)


if __name__ == "__main__":
    main()
