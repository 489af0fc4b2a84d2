"""onlyif.tasks"""
