"""Serving: the read-only list service downstream systems pull from, and the analysts' SQL route."""
