"""python -m tasks.doctor INVENTORY [--json] [pyinfra options]: see tasks/doctor."""

import sys

from tasks.doctor.cli import main

sys.exit(main())
