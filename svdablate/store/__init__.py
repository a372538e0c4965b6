"""The MLflow store: opening and checking it, the spool and its writer, reading child runs."""
