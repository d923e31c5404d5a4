"""Runs a command; succeeds only if it exits with exactly the expected status in time.

usage: exit.py STATUS [--timeout SECONDS] COMMAND [ARG]...

Output and input pass through. A crash (a signal) or a timeout is always a failure, so a
test of bad input tells "rejected cleanly" (1) from "bad usage" (2) and from "crashed".
"""
import subprocess
import sys


def main():
    args = sys.argv[1:]
    want = int(args.pop(0))
    timeout = 10.0
    if args and args[0] == "--timeout":
        args.pop(0)
        timeout = float(args.pop(0))
    try:
        got = subprocess.run(args, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        sys.stderr.write(f"exit.py: {args[0]} ran longer than {timeout} s\n")
        return 1
    if got != want:
        what = f"signal {-got}" if got < 0 else f"exit status {got}"
        sys.stderr.write(f"exit.py: expected exit status {want}, got {what}: {' '.join(args)}\n")
        return 1
    return 0


sys.exit(main())
