"""exit.py N CMD...: runs CMD; exits 0 if CMD exited with exactly N within 60 seconds, else 1.

Standard output and error of CMD pass through, so a FileCheck can read them after it.
"""
import subprocess
import sys

expected = int(sys.argv[1])
try:
    code = subprocess.run(sys.argv[2:], timeout=60).returncode
except subprocess.TimeoutExpired:
    print("exit.py: timed out: %s" % " ".join(sys.argv[2:]), file=sys.stderr)
    sys.exit(1)
if code != expected:
    print("exit.py: expected exit code %d, got %d: %s" % (expected, code, " ".join(sys.argv[2:])), file=sys.stderr)
    sys.exit(1)
