"""The errors a campaign command can end with: each one line naming the file, column, rule or rows."""

from __future__ import annotations

from nextbest.errors import UserError


class CampaignError(UserError):
    """Bad campaign input: an unknown product, an empty audience, a bad file or column (exit 2)."""


class CampaignStepMissingError(CampaignError):
    """A campaign step has not run yet (no plan before ``assign``, no assignment before ``readout``)."""

    exit_code = 1
