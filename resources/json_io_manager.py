"""IO manager for the small JSON pointers that assets hand to each other.

Assets write their artifacts themselves (shards, Parquet, manifests) through the storage
resource and return only a pointer `{"root": ..., "version": ...}`. This IO manager stores
those pointers as JSON under `dagster_io/` in the same storage — no pickle anywhere.
"""


import dagster as dg

from resources.storage import StorageResource


def _safe(partition_key: str) -> str:
    return partition_key.replace("|", "__").replace("/", "_")


def pointer_path(asset_key: dg.AssetKey, partition_key: str | None) -> str:
    base = "dagster_io/" + "/".join(asset_key.path)
    return f"{base}/{_safe(partition_key)}.json" if partition_key else f"{base}.json"


def read_pointers(st, asset: str, partitions: list[str] | None = None) -> dict:
    """The stored pointer of an asset (unpartitioned), or {partition: pointer} of the given
    partitions — for an asset that depends on another only when a recipe uses it (a `deps`
    edge, read on demand, instead of an input Dagster would load for every recipe)."""
    key = dg.AssetKey(asset)
    if partitions is None:
        rel = pointer_path(key, None)
        if not st.exists(rel):
            raise FileNotFoundError(f"{asset} is not materialized; materialize it first")
        return st.read_json(rel)
    missing = [pk for pk in partitions if not st.exists(pointer_path(key, pk))]
    if missing:
        raise FileNotFoundError(f"{asset} is not materialized for partitions {missing}; materialize them first")
    return {pk: st.read_json(pointer_path(key, pk)) for pk in partitions}


class JsonPointerIOManager(dg.ConfigurableIOManager):
    storage: dg.ResourceDependency[StorageResource]

    def _rel(self, asset_key: dg.AssetKey, partition_key: str | None) -> str:
        return pointer_path(asset_key, partition_key)

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        if obj is None:
            return
        pk = context.asset_partition_key if context.has_asset_partitions else None
        self.storage.get().write_json(self._rel(context.asset_key, pk), obj)

    def load_input(self, context: dg.InputContext):
        st = self.storage.get()
        key = context.asset_key
        if not context.has_asset_partitions:
            return st.read_json(self._rel(key, None))
        keys = context.asset_partition_keys
        if len(keys) == 1 and context.has_partition_key and context.partition_key == keys[0]:
            return st.read_json(self._rel(key, keys[0]))
        # Several upstream partitions mapped onto one consumer: a dict by partition key.
        present = {pk: self._rel(key, pk) for pk in keys if st.exists(self._rel(key, pk))}
        missing = sorted(set(keys) - set(present))
        if missing and not (context.definition_metadata or {}).get("allow_missing_partitions"):
            raise FileNotFoundError(f"{key.to_user_string()} is not materialized for partitions {missing}; "
                                    f"materialize them first (needed: {sorted(keys)})")
        return {pk: st.read_json(rel) for pk, rel in present.items()}


def mapped_pointer(loaded: dict, partition: str) -> dict:
    """The pointer of one upstream partition: a mapped input arrives as {partition: pointer}
    (the consumer's partition key differs from the parent's), a same-key input as the pointer."""
    return loaded if "version" in loaded else loaded[partition]
