"""Models: rule-based fits now (rules.py); LightGBM propensity models later."""
