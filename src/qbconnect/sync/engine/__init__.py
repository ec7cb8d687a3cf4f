"""The job engine: the job table, the runner, the handler registry and periodic passes, routing, clients."""
