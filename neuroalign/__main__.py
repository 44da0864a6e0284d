"""``python -m neuroalign …`` (and ``torchrun … -m neuroalign …``): the ``neuroalign`` command."""

import sys

from neuroalign.cli import main

if __name__ == "__main__":
    sys.exit(main())
