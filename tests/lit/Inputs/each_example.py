"""For each examples/*.opt: print(print(x)) == print(x) through the tool."""
import glob
import os
import subprocess
import sys

tool, examples = sys.argv[1], sys.argv[2]
files = sorted(glob.glob(os.path.join(examples, "*.opt")))
if not files:
    sys.exit("no examples")
for f in files:
    once = subprocess.run([tool, "print", f], check=True, capture_output=True).stdout
    twice = subprocess.run([tool, "print", "-"], input=once, check=True, capture_output=True).stdout
    if once != twice:
        sys.exit(f"{f}: printing is not a fixed point")
