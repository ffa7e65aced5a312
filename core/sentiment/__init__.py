"""The review sentiment model: data, model, training, evaluation and scoring."""
