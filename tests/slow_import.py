"""A runtime that takes half a second to import (``test-slow-import`` in ``tests.cost_variants``): whether two
workers' imports overlap shows in their import intervals."""

import time

time.sleep(0.5)
