"""The papers' claims as data, their tests, Holm over the family, verdicts, docs/claims.md."""
