"""The alert state (silences, spool, log, open incidents) and the pipeline a page goes through."""
