#!/usr/bin/env python3
"""Heap alive at heaptrack's peak, by owner (standard library only).

Usage: heaptrack_owners.py STACKS.txt

STACKS.txt is `heaptrack_print -f heaptrack.zst -F STACKS.txt --flamegraph-cost-type peak`:
one call stack per line (frames separated by `;`) and the bytes its allocations held at the
peak. Each stack goes to the first owner whose pattern it contains (the processors' own state
first, then redb, then librdkafka); MiB per owner and the total are printed.
"""

import collections
import re
import sys

OWNERS = [
    ("risk-scoring: velocity history (PayerState.recent, record_event)", r"record_event"),
    ("risk-scoring: dedup ids (PayerState.seen_ids, remember_id)", r"remember_id"),
    ("risk-scoring: known payees (remember_payee)", r"remember_payee"),
    ("risk-scoring: other payer and blacklist state", r"4risk|decode_payer"),
    ("daily-consolidation: ids and chunks (AccountSlot)", r"consolidation"),
    ("below-average", r"below_average"),
    ("price-change", r"price_change"),
    ("redb: page cache, write buffer, commit", r"redb|page_manager|tree_store|cached_file"),
    ("librdkafka", r"rd_kafka|rdkafka|rd_avg"),
    ("other (records in flight, runtime, TLS roots, ...)", r""),
]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    owned = collections.Counter()
    with open(sys.argv[1], errors="replace") as f:
        for line in f:
            stack, _, cost = line.rstrip("\n").rpartition(" ")
            if not cost.isdigit():
                continue
            owner = next(name for name, pat in OWNERS if re.search(pat, stack))
            owned[owner] += int(cost)
    for name, _ in OWNERS:
        print(f"{owned[name] / 2**20:8.2f} MiB  {name}")
    print(f"{sum(owned.values()) / 2**20:8.2f} MiB  alive at the heap's peak")


if __name__ == "__main__":
    main()
