"""The core queue: batches, tasks, executions and workers, their state machine
(``transitions``), claiming (``scheduling``) and the workers' reports. No Flask: the API,
the GUI, the reaper and the benchmark and recruitment domains build on it."""
