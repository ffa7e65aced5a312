"""Raw exports in: readers, formats and mappings, validation, the load."""
