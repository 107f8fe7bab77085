"""A worker process of a load run (started by :mod:`mediastreams.load.processes`)."""

import sys

from .processes import worker_main

sys.exit(worker_main(sys.argv[1:]))
