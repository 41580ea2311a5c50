"""The storage resource: every artifact read and write goes through it."""


import dagster as dg
from pydantic import Field

from mm_assets.storage import Storage


class StorageResource(dg.ConfigurableResource):
    """Artifact storage at a local directory or an `s3://bucket/prefix` URI.

    `storage_options` go to fsspec (for S3: `key`, `secret`, `endpoint_url`, `client_kwargs`).
    """

    root: str = Field(description="Local directory or s3:// URI under which artifacts live")
    storage_options: dict = Field(default_factory=dict, description="fsspec options for the root")

    def get(self) -> Storage:
        return Storage(self.root, self.storage_options)
