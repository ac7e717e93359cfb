"""Moved to `cebench.storage` (shared by `tune` and `run --storage`). This name stays an alias of that very module, so
code that imports or patches `cebench.tune.storage` (its HEARTBEAT_S, say) acts on the one the workers use."""

import sys

from cebench import storage

sys.modules[__name__] = storage
