"""Privacy at the door and after it: pseudonyms, scrubbing, generalization, the budget
and its ledger, what makes a run private (`guarantee`), the small-cell floor
(`disclosure`) and the CSV formula guard (`csv_safe`). Imports nothing from the rest
of the project."""
