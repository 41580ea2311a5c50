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

def on_changed_evals(*also_read: str) -> dg.AutomationCondition:
    """The leaderboard and the ablation report follow the eval tables: requested once their data
    versions changed and no eval (or training run) they read is still in progress, so a burst of
    evals from one new run refreshes them once they are done, not once per eval. A new training
    run alone (its checkpoints not evaluated yet) does not request them, nor does anything else
    they read (`also_read`: curated datasets, samples tables — new curation counts once its
    model is evaluated); a missing eval partition does not block them (`eager` would wait for
    every checkpoint × benchmark to exist)."""
    return (
        AC.in_latest_time_window()
        & AC.any_deps_match(AC.data_version_changed() | AC.will_be_requested())
        .ignore(dg.AssetSelection.keys("training_run", *also_read)).since_last_handled()
        & ~AC.any_deps_in_progress()
        & ~AC.in_progress()
    ).with_label("eval tables changed")


ON_CHANGED_EVALS = on_changed_evals()
