"""A QuickBooks payment that pays a first invoice in full → one review request: handler, contact, store."""
