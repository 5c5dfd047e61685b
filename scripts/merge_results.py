"""Merges one study's rows into a section of docs/results.json.

Rows carry a "name" of the form "<model>/<what>" (or "<model>/<run>/<what>").
The rows given replace the rows of the same name; the two-part rows of the
models run now that were not produced again are dropped; every other row
stays. Rows are ordered by name depth, then by model.

  merge_results.py SECTION ROWS.jsonl MODEL...
"""
import json
import os
import sys

ORDER = ["mobilenet_v2", "mobilenet_v3_large", "mobilenet_multi_avg", "resnet50", "deeplabv3_mobilenet_v2"]
PATH = "docs/results.json"


def model_rank(name):
    model = name.split("/")[0]
    return ORDER.index(model) if model in ORDER else len(ORDER)


def main():
    section, rows_path, run = sys.argv[1], sys.argv[2], set(sys.argv[3:])
    rows = [json.loads(line) for line in open(rows_path) if line.strip()]
    results = json.load(open(PATH)) if os.path.exists(PATH) else {}
    new = {r["name"] for r in rows}
    kept = [r for r in results.get(section, [])
            if r["name"] not in new and not (r["name"].split("/")[0] in run and r["name"].count("/") == 1)]
    results[section] = sorted(kept + rows, key=lambda r: (r["name"].count("/"), model_rank(r["name"])))
    tmp = PATH + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    os.replace(tmp, PATH)
    json.dump(results[section], sys.stdout)


if __name__ == "__main__":
    main()
