"""Data where it lives: one interface over the places a task's data can be.

``file://``, ``server://`` (the scitq_bench server's own store), ``s3://``,
``azure://``, ``ftp://``/``ftps://`` and, to read, ``http(s)://``. ``locations``
parses the URIs; ``base`` defines a ``Store`` (one bucket, container, FTP host or
file system) and its errors; ``stores`` picks the implementation for a URI, imported
only when used; ``copying`` moves files and folders between any two of them with the
guarantees the worker and ``scitq-bench files`` rely on: a temporary name until the
bytes are checked, a manifest written last, retries with backoff.

Credentials come from where each SDK looks by default (environment, shared config,
instance role or managed identity) or from the storage settings file
(``config.StorageConfig``); never from a URI.
"""
