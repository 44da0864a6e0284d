"""``python -m neuroalign.cli``, the same as the ``neuroalign`` command."""

import sys

from neuroalign.cli import main

sys.exit(main())
