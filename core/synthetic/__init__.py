"""The built-in generator of raw demo exports."""
