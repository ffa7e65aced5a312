"""The model registry: run folders on disk and their listing."""
