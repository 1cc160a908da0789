#!/usr/bin/env python3
"""bench_table.py RAW.tsv [RUN.jsonl] - one row per fsbench workload, one column per system of
that run, and Cairn's (replicas=2) ratio to the best peer on the row: above 1 means Cairn is
better (for times, the peer's time divided by Cairn's). With the run's JSON lines, three rows of
context follow: the steal and the cross-CPU and same-CPU hop times measured for each system's run."""
import json, sys
rows, units, labels = {}, {}, []
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    if f[0] != "RESULT":
        continue
    label, name, value, unit = f[1:5]
    if label not in labels:
        labels.append(label)
    rows.setdefault(name, {})[label] = value
    units.setdefault(name, unit)
peers = [l for l in labels if l not in ("local", "cairn", "cairn_r1")]
def num(v):
    try: return float(v)
    except (TypeError, ValueError): return None
print("| workload | unit | " + " | ".join(labels) + " | Cairn ÷ best peer |")
print("|---" * (len(labels) + 3) + "|")
for name, vals in rows.items():
    unit = units[name]
    lower_better = unit == "s"
    ratio = ""
    c = num(vals.get("cairn"))
    pv = [num(vals.get(p)) for p in peers if num(vals.get(p))]
    if c and pv:
        best = min(pv) if lower_better else max(pv)
        ratio = "%.2f×" % ((best / c) if lower_better else (c / best))
    print("| %s | %s | %s | %s |" % (name, unit, " | ".join(vals.get(l, "-") for l in labels), ratio))

if len(sys.argv) > 2:
    context = {}
    for line in open(sys.argv[2]):
        if line.startswith("{"):
            r = json.loads(line)
            context[r["name"]] = r["value"]
    for key, unit in (("steal_pct", "%"), ("hop_rtt_cross_cpu", "µs"), ("hop_rtt_same_cpu", "µs")):
        print("| (%s) | %s | %s | |" % (key, unit, " | ".join(str(context.get("%s_%s" % (key, l), "-")) for l in labels)))
