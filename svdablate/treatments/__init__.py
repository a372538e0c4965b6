"""svdablate.treatments: ECCV'22 treatments (SN, OL, OW, NOG, OLR) of the Pre-SVD layer.

See ``docs/internals.md`` (treatments) for the contract and :mod:`.handle` for the calls.
"""

from svdablate.treatments.functional import nearest_orthogonal, olr_switch, optimal_lr
from svdablate.treatments.handle import PreSVDTreatments, attach_treatments
from svdablate.treatments.registry import (
    OW_MAPS,
    TREATMENTS,
    Treatment,
    TreatmentOptions,
    combination_warning,
    parse_treatments,
    register_treatment,
)
from svdablate.treatments.soc import SkewOrthogonalConv2d, SOCOptions

__all__ = [
    "OW_MAPS",
    "TREATMENTS",
    "PreSVDTreatments",
    "SOCOptions",
    "SkewOrthogonalConv2d",
    "Treatment",
    "TreatmentOptions",
    "attach_treatments",
    "combination_warning",
    "nearest_orthogonal",
    "olr_switch",
    "optimal_lr",
    "parse_treatments",
    "register_treatment",
]
