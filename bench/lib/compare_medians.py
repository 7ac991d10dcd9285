"""Medians of two peer-harness result files (JSON lines) side by side, with their ratio.

Usage: compare_medians.py A.jsonl B.jsonl LABEL_A LABEL_B METRIC[,METRIC...]
Rows are (test name without its label prefix, metric); only the listed metrics are shown.
"""
import json
import statistics
import sys


def medians(path):
    vals = {}
    for line in open(path):
        r = json.loads(line)
        for k, v in r.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("run", "seed"):
                name = (r.get("name") or "?").split(".", 1)[-1]  # drop the label ("local.", "single.")
                vals.setdefault((name, k), []).append(v)
    return {k: statistics.median(v) for k, v in vals.items()}


def main():
    path_a, path_b, label_a, label_b, metrics = sys.argv[1:6]
    keep = set(metrics.split(","))
    a, b = medians(path_a), medians(path_b)
    print("%-52s %12s %12s %8s" % ("metric", label_a, label_b, "%s/%s" % (label_b[0], label_a[0])))
    for k in sorted(set(a) & set(b)):
        if a[k] and k[1] in keep:
            print("%-52s %12.4g %12.4g %8.3f" % ("/".join(map(str, k)), a[k], b[k], b[k] / a[k]))


if __name__ == "__main__":
    main()
