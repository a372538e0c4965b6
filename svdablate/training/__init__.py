"""One trial: the training loop (`loop.train_trial`) and its optimizer step (`update`)."""
