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
# References, not peers: the local disk and libfuse's passthrough_ll over it (the FUSE ceiling).
references = ("local", "passthrough")
peers = [l for l in labels if l not in references + ("cairn", "cairn_r1")]
ceiling = "passthrough" in labels
def num(v):
    try: return float(v)
    except (TypeError, ValueError): return None
def ratio(c, other, lower_better):
    return "%.2f×" % ((other / c) if lower_better else (c / other))
print("| workload | unit | " + " | ".join(labels) + " | Cairn ÷ best peer |" + (" Cairn ÷ passthrough |" if ceiling else ""))
print("|---" * (len(labels) + 3 + ceiling) + "|")
for name, vals in rows.items():
    unit = units[name]
    lower_better = unit == "s"
    to_peer = to_ceiling = ""
    c = num(vals.get("cairn"))
    pv = [num(vals.get(p)) for p in peers if num(vals.get(p))]
    if c and pv:
        to_peer = ratio(c, min(pv) if lower_better else max(pv), lower_better)
    if c and num(vals.get("passthrough")):
        to_ceiling = ratio(c, num(vals.get("passthrough")), lower_better)
    print("| %s | %s | %s | %s |" % (name, unit, " | ".join(vals.get(l, "-") for l in labels), to_peer) + (" %s |" % to_ceiling if ceiling else ""))

if len(sys.argv) > 2:
    context = {}
    for line in open(sys.argv[2]):
        if line.startswith("{"):
            r = json.loads(line)
            context[r["name"]] = r["value"]
    for key, unit in (("steal_pct", "%"), ("hop_rtt_cross_cpu", "µs"), ("hop_rtt_same_cpu", "µs")):
        print("| (%s) | %s | %s | |" % (key, unit, " | ".join(str(context.get("%s_%s" % (key, l), "-")) for l in labels)) + (" |" if ceiling else ""))
