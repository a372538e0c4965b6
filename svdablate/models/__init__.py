"""svdablate.models"""
