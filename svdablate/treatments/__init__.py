"""svdablate.treatments"""
