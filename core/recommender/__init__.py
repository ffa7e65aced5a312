"""The DP cross-encoder recommender: data, model, training, evaluation, scoring, audit."""
