"""Model types for lm-eval: import `lm_eval_trust.model_adapters.trust_hf` to register `trust-hf`."""
