"""The error the pure mapping raises when a CRM record cannot be booked as asked."""

from __future__ import annotations

from qbconnect.errors import PermanentError


class MappingError(PermanentError):
    """A CRM record cannot be mapped to QBO (unmapped tax, currency, number too long...).

    Permanent: retrying the same data fails the same way; the message tells the user what to fix.
    """
