"""The mini open-vocabulary world (the default, CPU-sized profile)."""
