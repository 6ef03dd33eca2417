"""File formats: atomic writes, predictions Parquet, model directories."""
