"""What trains and predicts: the LightGBM propensity models (``propensity``). Imports only the platform."""
