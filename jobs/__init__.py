"""The data factory jobs: simulate, ingest, conform, tags, segments, score, export."""
