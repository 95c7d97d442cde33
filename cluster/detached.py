"""Run a command detached inside a container with its output in a log file (no shell string):
`python -m cluster.detached LOGFILE CMD ARGS...`."""

import subprocess
import sys


def main() -> None:
    log, cmd = sys.argv[1], sys.argv[2:]
    with open(log, "ab", buffering=0) as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        sys.exit(proc.wait())


if __name__ == "__main__":
    main()
