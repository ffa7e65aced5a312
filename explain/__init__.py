"""Explanations of recommendations.

One result type (`explain.result.Explanation`), explainers that take the model as a
plain callable (text_a list, text_b list) -> logits (a
`core.recommender.model.CrossEncoder` is accepted too), all explaining the
probability-like score sigmoid(logit):

    explain.field_shap   explain_fields (SHAP over fields: Exact up to 4 fields, else
                         Permutation), leave_one_out, FieldMasker
    explain.token_shap   explain_tokens (SHAP over the words of one field, Partition with
                         shap.maskers.Text; LRU + on-disk cache)
    explain.attention    explain_attention / attention_tokens ("attention-cls",
                         "attention-rollout": where the model looked, not a cause),
                         rank_agreement (Spearman, Kendall)
    explain.faithfulness ERASER comprehensiveness / sufficiency / AOPC, evaluate_run,
                         preferred_method (data/models/<run_id>/faithfulness.json)
    explain.reasons      reason(explanation): one sentence for marketers
    explain.export       streamed long-format CSV (one customer, an audience, everyone)
    explain.service      ExplainService / get_service: a run's model, data and cached
                         explanations for the page, the CLI and the export
    explain.stored       explanations computed after scoring, kept in the warehouse
    explain.scoring      the value function: coalitions of fields -> cached scores

Design notes:
- Masking = deletion: a removed field is left out of the text the model reads
  (`core.recommender.fields.to_text_pair(fields, masked=...)`), never replaced by a
  placeholder. The base value is the score of the input with every field removed.
- The late-interaction model (`core.recommender.model`) encodes each side's text once;
  the scorer caches scores per exact text pair, so the history-and-context side of the coalitions is
  shared by all candidates of a customer (the second and later explanations of a page
  cost a fraction of the first).
- Explanations score through the model's own public steps (`score_pairs`; attention via
  `side_states`, `join`, `score_hidden` on an eager-attention copy), so they follow the
  model as it changes instead of re-implementing its forward.
"""
