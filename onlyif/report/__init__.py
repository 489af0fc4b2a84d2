"""onlyif.report"""
