"""``python -m wsgi_ws``: the command line (:mod:`wsgi_ws.cli`), ``serve APP`` and ``client URI``."""

import sys

from wsgi_ws.cli import main

if __name__ == "__main__":
    sys.exit(main())
