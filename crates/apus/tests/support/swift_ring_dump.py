"""Dump what Swift's own Ring answers for a ring file, as JSON.

usage: swift_ring_dump.py RING_FILE PREFIX SUFFIX NAMES_JSON HANDOFFS OUT_JSON

NAMES_JSON is a list of [account, container|null, object|null]. The output
holds, for every partition, the primary device ids in replica order and the
first HANDOFFS handoff ids, and the partition Swift computes for each name.
The apus tests compare these with apus's own lookups.
"""
import itertools
import json
import sys

import swift.common.utils as swift_utils
from swift.common.ring import Ring


def main():
    ring_file, prefix, suffix, names_file, handoffs, out_file = sys.argv[1:7]
    swift_utils.HASH_PATH_PREFIX = prefix.encode('utf8')
    swift_utils.HASH_PATH_SUFFIX = suffix.encode('utf8')
    ring = Ring(ring_file)
    handoffs = int(handoffs)
    parts = []
    for part in range(ring.partition_count):
        primaries = [d['id'] for d in ring.get_part_nodes(part)]
        more = [d['id'] for d in
                itertools.islice(ring.get_more_nodes(part), handoffs)]
        parts.append([primaries, more])
    with open(names_file, encoding='utf8') as f:
        names = json.load(f)
    name_parts = [ring.get_part(a, c, o) for a, c, o in names]
    with open(out_file, 'w') as f:
        json.dump({'part_power': ring.part_power,
                   'replica_count': ring.replica_count,
                   'parts': parts, 'names': name_parts}, f)


if __name__ == '__main__':
    main()
