"""lm-eval task configs for the eight DecodingTrust dimensions, one folder per dimension."""
