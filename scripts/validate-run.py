#!/usr/bin/env python3
"""Validate run.json files against docs/run.schema.json (JSON Schema 2020-12, python3-jsonschema).

usage: scripts/validate-run.py [--schema FILE] RUN_JSON...
Prints one line per violation (file: path: message) and exits 1 if there was any, 2 on a usage error.
"""
import json
import os
import sys

try:
    import jsonschema
except ImportError:
    sys.stderr.write("validate-run.py: python3-jsonschema is not installed (scripts/deps.sh installs it)\n")
    sys.exit(77)


def main(argv):
    schema_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "run.schema.json")
    if len(argv) > 2 and argv[1] == "--schema":
        schema_path = argv[2]
        argv = argv[2:]
    files = argv[1:]
    if not files:
        sys.stderr.write(__doc__)
        return 2
    with open(schema_path) as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    bad = 0
    for path in files:
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            print("%s: cannot read: %s" % (path, e))
            bad += 1
            continue
        for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
            where = "/".join(str(p) for p in err.absolute_path) or "(top)"
            print("%s: %s: %s" % (path, where, err.message[:300]))
            bad += 1
    print("%d file%s checked, %d violation%s" % (len(files), "" if len(files) == 1 else "s", bad, "" if bad == 1 else "s"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
