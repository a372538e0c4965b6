"""svdablate.metalayers"""
