"""A study: plan, start, run and resume its trials (`study.Study`), its parent run and manifest."""
