"""The research repos' entry point: ``python main.py --dataset=... [--key=value ...]``.

Same flags and meaning as ``genrec run``.
"""

import sys

from genrec.cli import run_command

if __name__ == "__main__":
    sys.exit(run_command(("run",), sys.argv[1:]))
