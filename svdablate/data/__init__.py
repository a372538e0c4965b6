"""The datasets (`datasets.build_datasets`) and what MLflow records of them (`provenance`)."""
