"""onlyif.data"""
