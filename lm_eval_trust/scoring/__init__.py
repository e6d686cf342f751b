"""Scorers that turn generations into numbers DecodingTrust used external services for."""
