"""What a run produces: column buffers streamed to Parquet row groups (``recorder``, ``tables``,
``spool``), a lazily read ``Result`` (``result``), derived tables (``summary``, ``derived``,
``planner``) and result folders (``store``)."""
