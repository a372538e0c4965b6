"""svdablate.orchestrator"""
