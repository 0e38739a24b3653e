"""What a run produces: column buffers (``recorder``), DataFrames (``result``),
derived tables (``summary``) and Parquet files (``store``)."""
