"""Every capability's rollup specs, refreshed together once per night (tasks/warehouse/rollups.py).

Each capability adds ONE import line here binding a tuple of specs to a name ending in
``_SPECS``; :data:`ALL_SPECS` collects every such tuple of this module, in name order.
"""

from __future__ import annotations

from tasks.allocation.rollups import ALLOCATION_SPECS  # noqa: F401 - collected into ALL_SPECS
from tasks.experiments.rollups import EXPERIMENT_SPECS  # noqa: F401 - collected into ALL_SPECS
from tasks.monitoring.rollups import MONITORING_SPECS  # noqa: F401 - collected into ALL_SPECS
from tasks.warehouse.rollup_specs import WAREHOUSE_SPECS
from tasks.warehouse.rollups import RollupSpec

ALL_SPECS: tuple[RollupSpec, ...] = tuple(
    spec
    for name, specs in sorted(dict(globals()).items())
    if name.endswith("_SPECS") and name != "ALL_SPECS"
    for spec in specs
)

__all__ = ["ALL_SPECS", "WAREHOUSE_SPECS"]
