"""Synthetic source data whose truth the tests and the demo check the pipelines against."""
