"""Data steps over records: summaries now; curation (filter, dedup, decontaminate, split) comes later."""
