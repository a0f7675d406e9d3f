"""The command line: one group per domain, a few top-level verbs for whole jobs."""
