"""CRM payments → QuickBooks sales receipts and refund receipts: handler, booking, discovery (polling)."""
