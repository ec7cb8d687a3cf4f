"""The job engine: intake of platform events, the job table, the runner, the handler registry and periodic
passes, routing, the job's clients."""
