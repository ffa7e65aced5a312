"""Privacy at the door and after it: pseudonyms, scrubbing, generalization, budget."""
