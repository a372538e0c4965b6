"""svdablate.report"""
