"""What the web pages, JSON API and CLI ask of the product: onboarding flows, overviews, the activity view."""
