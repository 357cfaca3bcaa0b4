#!/usr/bin/python3
"""Copy the scale section of a bench report into docs/benchmarks.md, between the lines
`<!-- scale:begin -->` and `<!-- scale:end -->` (kept), with the date of the run.

usage: scripts/scale-publish.py bench/out/report.md docs/benchmarks.md
"""
import datetime
import re
import sys

report = open(sys.argv[1]).read()
m = re.search(r"^## Side by side at N containers\n(.*?)(?=^## |\Z)", report, re.S | re.M)
if not m:
    sys.exit("no scale section in " + sys.argv[1])
doc = open(sys.argv[2]).read()
begin, end = "<!-- scale:begin -->", "<!-- scale:end -->"
if begin not in doc or end not in doc:
    sys.exit("%s has no %s ... %s markers" % (sys.argv[2], begin, end))
body = "\n_Run of %s (`scripts/bench.sh scale`)._\n\n![cost against containers](img/scale.png)\n\n%s\n" % (
    datetime.date.today().isoformat(), m.group(1).strip())
head, rest = doc.split(begin, 1)
_, tail = rest.split(end, 1)
open(sys.argv[2], "w").write(head + begin + "\n" + body + end + tail)
