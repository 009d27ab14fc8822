"""`python -m circuits`: the `circuits` command.

`python -m` puts the working directory first on `sys.path`, so a folder holding packages of its
own named `catalog`, `ingest`, `queries` or `migrations` (generic names: a Django project has a
`migrations` package) would shadow this distribution's. The command never imports from the working
directory, so that entry is dropped first, as `python -P` does.
"""

import os
import sys

if not sys.flags.safe_path and sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from circuits.cli.main import main

main()
