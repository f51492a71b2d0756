"""Every table of the server's one schema, gathered in one metadata.

Each domain declares its tables in its own ``models`` module on the queue's ``Base``;
importing this module loads them all, so that migrations, ``create_all`` and foreign
keys across domains (a token's account, a worker's recruiter) see the whole schema.
"""

from __future__ import annotations

from sqlalchemy import MetaData

from scitq_bench.server import leader  # noqa: F401 - the leader's lease table
from scitq_bench.server.bench import models as bench_models  # noqa: F401
from scitq_bench.server.queue.models import Base
from scitq_bench.server.recruit import models as recruit_models  # noqa: F401

metadata: MetaData = Base.metadata
