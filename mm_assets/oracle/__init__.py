"""The oracle: the upper bound that drops exactly the generated data's planted defects — the only
code whose decisions read the planted truth (not a curation method; see `step.py`)."""

from .step import DEFECT_KINDS, ORACLE_LABEL, planted_defect_ids, planted_defects

__all__ = ["DEFECT_KINDS", "ORACLE_LABEL", "planted_defect_ids", "planted_defects"]
