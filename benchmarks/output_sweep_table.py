"""The fastest rows of kernel_stages.py's output sweep (its log as the argument), beside fp32 vn at the default launch."""
import json
import sys

for line in open(sys.argv[1]):
    if not line.startswith("| output sweep"):
        continue
    head, rows = line.rsplit("| ", 1)
    rows = [r for r in json.loads(rows) if isinstance(r[-1], float)]
    base = [r for r in rows if r[0] == "vn32" and r[1] == 128 and r[2] == 4 and r[3] == 2]
    print(head, "| fp32 vn at BV 128, 4 warps, 2 stages", f"{base[0][-1]:.3f}" if base else None)
    for r in sorted(rows, key=lambda r: r[-1])[:6]:
        print(f"    {r[0]} BV {r[1]} warps {r[2]} stages {r[3]}: {r[4]:.3f}")
