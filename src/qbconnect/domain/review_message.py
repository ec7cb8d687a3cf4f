"""The review request's words: built from the location's settings, and previewed on the settings page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qbconnect.domain.location_settings import LocationSettings
from qbconnect.domain.review import render_review_message

PREVIEW_FIRST_NAME = "Alex"
PREVIEW_LINK = "https://example.com/your-review-link"
NO_LINK_REASON = "no review link set"
DISABLED_REASON = "review requests are turned off"


@dataclass(frozen=True)
class ReviewMessage:
    channel: str  # Email | SMS
    subject: str
    html: str
    text: str


def inactive_reason(settings: LocationSettings) -> str | None:
    """Why review requests are off for the location, or None when they go out."""
    if not settings.review_request_enabled:
        return DISABLED_REASON
    if settings.review_link is None:
        return NO_LINK_REASON
    return None


def template_of(settings: LocationSettings) -> str:
    """The message template with the settings' subject as its ``Subject:`` line (unless it has its own)."""
    message = settings.review_message
    if message.lstrip().lower().startswith("subject:"):
        return message
    return f"Subject: {settings.review_subject}\n{message}"


def compose(settings: LocationSettings, *, first_name: str, business_name: str, review_link: str) -> ReviewMessage:
    subject, html, text = render_review_message(template_of(settings), first_name, business_name, review_link)
    return ReviewMessage(channel=settings.review_request_channel, subject=subject, html=html, text=text)


def preview_review_message(settings: LocationSettings, business_name: str) -> dict[str, Any]:
    """What the settings page shows: the message as a sample customer would get it, and whether it is on.

    Keys: ``active`` (bool), ``status`` (a sentence for the page), ``channel``, ``subject`` (None for SMS),
    ``html`` (None for SMS), ``text``, ``review_link`` (the configured link or None).
    """
    reason = inactive_reason(settings)
    link = str(settings.review_link) if settings.review_link is not None else None
    message = compose(
        settings, first_name=PREVIEW_FIRST_NAME, business_name=business_name, review_link=link or PREVIEW_LINK
    )
    if reason is None:
        status = (
            f"On: when QuickBooks shows a customer's first invoice paid in full, they get this "
            f"{'email' if message.channel == 'Email' else 'text message'}, once."
        )
    elif reason == NO_LINK_REASON:
        status = "Off until you set a review link: review requests need a link to send."
    else:
        status = "Off: review requests are turned off."
    is_email = message.channel == "Email"
    return {
        "active": reason is None,
        "status": status,
        "channel": message.channel,
        "subject": message.subject if is_email else None,
        "html": message.html if is_email else None,
        "text": message.text,
        "review_link": link,
    }
