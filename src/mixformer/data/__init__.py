"""Reading frames, benchmark and training datasets, sampling, processing and synthetic data."""
