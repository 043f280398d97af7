"""Training: the mini profile's pretraining stages and the SMART trainer."""
