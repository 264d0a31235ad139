#!/usr/bin/env python3
"""Summarizes repeated loadgen runs into the markdown tables of docs/benchmarks.md.

Input: JSON lines, each either a loadgen report or {"store": NAME, "report": REPORT} (what
benches/scripts/store-matrix.sh writes). Runs with the same store, clients, rooms,
concurrency, messages and rate are one row: the median run by acked/s, with the range of
acked/s over the runs.

    python3 benches/scripts/summarize.py matrix.jsonl
"""

import json
import statistics
import sys
from collections import OrderedDict


def key(store, report):
    return (
        store,
        report["clients"],
        report["rooms"],
        report["concurrency"],
        report["messages_per_client"],
        report.get("rate"),
    )


def ms(micros):
    return f"{micros / 1000:.2f}"


def row(key_, runs):
    store, clients, rooms, concurrency, messages, rate = key_
    runs = sorted(runs, key=lambda r: r["acked_per_sec"])
    median = runs[len(runs) // 2]
    acked = [r["acked_per_sec"] for r in runs]
    ack = median["ack_latency"]
    process = median.get("process") or {}
    batches = median.get("batches") or {}
    correct = sum(1 for r in runs if r["correctness"]["correct"])
    senders = clients * concurrency
    cells = [
        store,
        str(senders),
        f"{clients} × {concurrency}",
        str(rooms),
        "max" if rate is None else f"{rate:.0f}",
        f"{statistics.median(acked):.0f} ({min(acked):.0f}–{max(acked):.0f})",
        f"{ms(ack['p50_us'])} / {ms(ack['p99_us'])} / {ms(ack['max_us'])}",
        f"{median['delivered_per_sec']:.0f}",
        f"{batches.get('mean_size', 0):.1f}" if batches else "–",
        f"{process.get('cpu_percent', 0):.0f} %" if process else "–",
        f"{process.get('peak_rss_mib', 0):.0f}" if process else "–",
        f"{correct}/{len(runs)}",
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = [
    "store",
    "senders",
    "clients × outstanding",
    "rooms",
    "rate/s",
    "acked/s median (min–max)",
    "ack p50 / p99 / max ms",
    "delivered/s",
    "sends per commit",
    "daemon CPU",
    "peak RSS MiB",
    "correct",
]


def main(paths):
    groups = OrderedDict()
    for path in paths:
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                line = line.strip()
                if not line:
                    continue
                entry = json.loads(line)
                store, report = (
                    (entry["store"], entry["report"]) if "report" in entry else ("–", entry)
                )
                groups.setdefault(key(store, report), []).append(report)
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for key_, runs in groups.items():
        print(row(key_, runs))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
