"""The `clearmark` command: the composition root of the project."""
