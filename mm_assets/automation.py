"""The automation condition of the curation chain: recompute only what changed, by data version.

`eager()` counts parent materializations, so a parent re-materialized with identical content
would still re-trigger its children. Here a child is requested only when a parent's *data
version* changed (or a parent is requested in the same tick), so an edit that leaves a step's
output byte-identical stops there (`shared/notes/dagster-1.13.md` §1b, verified there).
"""

import dagster as dg

AC = dg.AutomationCondition

ON_CHANGED_DATA = AC.eager().replace(
    "any_deps_updated", AC.any_deps_match(AC.data_version_changed() | AC.will_be_requested()))
