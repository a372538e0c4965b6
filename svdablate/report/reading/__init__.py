"""Reading a study's runs from MLflow: child runs as a DataFrame, finding parent runs."""
