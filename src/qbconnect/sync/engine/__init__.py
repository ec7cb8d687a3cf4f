"""The sync engine: intake of platform events and the job runner."""
