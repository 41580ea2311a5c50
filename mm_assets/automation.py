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

# The leaderboard follows the eval tables: requested once their data versions changed and no
# eval (or training run) it reads is still in progress, so a burst of evals from one new run
# refreshes it once they are done, not once per eval. A new training run alone (its checkpoints
# not evaluated yet) does not request it; nor does a missing eval partition block it (`eager`
# would wait for every checkpoint × benchmark to exist).
ON_CHANGED_EVALS = (
    AC.in_latest_time_window()
    & AC.any_deps_match(AC.data_version_changed() | AC.will_be_requested())
    .ignore(dg.AssetSelection.keys("training_run")).since_last_handled()
    & ~AC.any_deps_in_progress()
    & ~AC.in_progress()
).with_label("eval tables changed")
