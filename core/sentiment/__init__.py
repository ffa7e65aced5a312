"""The review sentiment model: data, model, training and scoring."""
