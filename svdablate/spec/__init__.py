"""The study's spec: the typed trial (`config.TrialConfig`), presets, grid, overrides, cost."""
