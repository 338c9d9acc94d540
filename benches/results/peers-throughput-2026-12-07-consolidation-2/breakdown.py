#!/usr/bin/env python3
"""breakdown.py SCRIPT_TXT [FOLDED_OUT]: perf script (comm,tid,period,ip,sym) -> percent of samples by component."""
import sys, collections, re
RULES = [  # (component, any-frame substring), first match from the top of this list wins
    ("checkpoint: store commit (redb)", ["EmbeddedStore as fluxo::state::StateStore>::commit"]),
    ("checkpoint: processor flush (rows, chunks, WriteBatch)", ["Processor>::flush", "Job>::flush"]),
    ("checkpoint: Kafka transaction commit", ["transactions::Transactions", "Transactions>::commit"]),
    ("checkpoint: other (producer flush, offsets)", ["Task>::checkpoint", "Task>::snapshot", "checkpoint_staged", "commit_staged"]),
    ("record: decode (Avro)", ["Binding>::decode", "codec::Codec>::decode", "Codec>::decode", "AvroEvent>::decode", "::decode"]),
    ("record: processor (consolidation)", ["ConsolidationProcessor as fluxo_processors::Processor>::process"]),
    ("record: encode (Avro, key)", ["Binding>::encode", "Codec>::encode", "encode_typed"]),
    ("record: produce (rdkafka produce call)", ["Task>::produce", "BaseProducer", "rd_kafka_produce", "rd_kafka_producev"]),
    ("record: metrics", ["prometheus::"]),
    ("record: engine other (ids, headers, bookkeeping)", ["Task>::handle"]),
    ("loop: consume poll / batch", ["process_batch", "poll_group", "BaseConsumer", "rd_kafka_consumer_poll"]),
    ("loop: other", ["RunLoop", "run_loop"]),
]
def classify(comm, frames):
    if not comm.startswith("fluxo-daily"):
        if comm.startswith("rdk:"):
            return "librdkafka threads (" + re.sub(r"[0-9/]+.*$", "", comm) + ")"
        return "other threads (" + comm + ")"
    text = "\n".join(frames)
    for name, subs in RULES:
        if any(s in text for s in subs):
            return name
    return "engine thread: other"
def main():
    counts = collections.Counter(); folded = collections.Counter(); total = 0
    comm = None; frames = []
    def flush():
        nonlocal total
        if comm is None: return
        c = classify(comm, frames); counts[c] += 1; total += 1
        folded[";".join([comm] + [f for f in reversed(frames)])] += 1
    for line in open(sys.argv[1], errors="replace"):
        if not line.strip():
            flush(); comm = None; frames = []; continue
        if not line.startswith(("\t", " ")):
            comm = line.split()[0]; continue
        parts = line.strip().split(None, 1)
        frames.append(parts[1] if len(parts) > 1 else parts[0])
    flush()
    for c, n in counts.most_common():
        print(f"{100*n/total:6.1f}%  {n:6d}  {c}")
    print(f"total samples {total}")
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w") as f:
            for k, v in folded.items(): f.write(f"{k} {v}\n")
main()
