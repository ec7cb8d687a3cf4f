"""QuickBooks in the CRM's own workflows: the app's Marketplace triggers, its balance action, and each
contact's QuickBooks balance. See docs/workflows.md."""
