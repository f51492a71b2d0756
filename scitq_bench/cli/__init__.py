"""The ``scitq-bench`` command line: object/verb commands in the manner of scitq-manage."""
