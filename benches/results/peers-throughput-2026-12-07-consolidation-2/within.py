#!/usr/bin/env python3
"""within.py FOLDED SUBSTR [DEPTH]: for stacks containing SUBSTR, count the frame DEPTH levels below the first SUBSTR frame (1=direct callee), and leaves."""
import sys, collections
sub = sys.argv[2]; depth = int(sys.argv[3]) if len(sys.argv) > 3 else 1
below = collections.Counter(); leaves = collections.Counter(); tot = 0; all_ = 0
for line in open(sys.argv[1]):
    stack, n = line.rsplit(" ", 1); n = int(n); all_ += n
    fr = stack.split(";")
    idx = next((i for i, f in enumerate(fr) if sub in f), None)
    if idx is None: continue
    tot += n
    below[fr[idx + depth][:150] if idx + depth < len(fr) else "<self>"] += n
    leaves[fr[-1][:150]] += n
print(f"{tot} of {all_} samples ({100*tot/all_:.1f}%)")
print("-- callees at depth", depth)
for k, v in below.most_common(25): print(f"{100*v/all_:5.1f}% {v:5d} {k}")
print("-- leaves")
for k, v in leaves.most_common(20): print(f"{100*v/all_:5.1f}% {v:5d} {k}")
