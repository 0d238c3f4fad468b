"""One asset per pipeline stage, all in group `dubbing`, partitioned by episode."""
