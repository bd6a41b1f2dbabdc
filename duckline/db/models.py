"""Every table, so `Base.metadata` is complete (Alembic's environment, the start-up, the tests'
TRUNCATE, the benches): import Base from here, and each model from its package's models."""

from __future__ import annotations

from duckline.accounts import models as accounts
from duckline.billing import models as billing
from duckline.catalog import models as catalog
from duckline.db.base import NAMING, Base
from duckline.diameter import models as diameter
from duckline.lines import models as lines
from duckline.messaging import models as messaging
from duckline.sip import models as sip
from duckline.staff import models as staff
from duckline.support import models as support
from duckline.usage import models as usage

# Importing a package's models module is what maps its tables onto Base.metadata.
PACKAGES = (accounts, billing, catalog, diameter, lines, messaging, sip, staff, support, usage)

__all__ = ["NAMING", "PACKAGES", "Base"]
