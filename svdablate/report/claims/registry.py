"""Every claim of the papers the report tests (`CLAIMS`) and those it cannot (`UNTESTABLE`).

The claims themselves are in `eccv22.py` and `iccv21.py`, their data model and its rules
(binding to a context, quantities, tests) in `model.py`.
"""

from __future__ import annotations

from svdablate.report.claims.eccv22 import ECCV22_CLAIMS, ECCV22_UNTESTABLE
from svdablate.report.claims.iccv21 import ICCV21_CLAIMS, ICCV21_UNTESTABLE
from svdablate.report.claims.model import Claim, Untestable, check_claims

CLAIMS: tuple[Claim, ...] = check_claims((*ECCV22_CLAIMS, *ICCV21_CLAIMS))
UNTESTABLE: tuple[Untestable, ...] = (*ECCV22_UNTESTABLE, *ICCV21_UNTESTABLE)

__all__ = ["CLAIMS", "UNTESTABLE"]
